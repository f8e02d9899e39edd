import './base.css';
import './pipeline.css';
import './experiments.css';
import './endpointhealth.css';
import './modelsux.css';
import './charts.css';
import './notebookrun.css';
