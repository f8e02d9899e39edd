import './base.css';
import './pipeline.css';
import './experiments.css';
import './endpointhealth.css';
