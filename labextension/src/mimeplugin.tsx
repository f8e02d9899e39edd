/**
 * The notebook's job, study and pipeline views, drawn by the same React components as the
 * sidebar: a MIME renderer of `application/vnd.kfjupyter.job+json` (a job's metrics chart,
 * as its tab shows it), `application/vnd.kfjupyter.study+json` (a study's best trial, its
 * charts and "Retrain with the best", as the Tuning panel shows them) and
 * `application/vnd.kfjupyter.pipeline+json` (a pipeline's or a run's DAG, laid out by
 * dagre with each step's state, as the Pipeline panel draws it). The Python side
 * (kfjupyter/widgets/job_view.py, study_view.py, kfjupyter/pipelines/model.py, api.py)
 * sends these with plain HTML beside them, which is what a notebook shows where this
 * extension is not installed.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { KFApi } from './api';
import { MetricsChart } from './components/chart';
import { StatusBadge } from './components/common';
import { StudyCharts } from './components/objective';
import { DagView } from './components/pipeline';
import { BestTrialView } from './components/tuning';
import type { IPipeline } from './pipelineapi';
import { retrainBest, studyImportances } from './studies';
import { paramNames, progressText } from './tuning';
import { IChannel, IMetricRow, IStudy } from './types';

export const JOB_MIME = 'application/vnd.kfjupyter.job+json';
export const STUDY_MIME = 'application/vnd.kfjupyter.study+json';
export const PIPELINE_MIME = 'application/vnd.kfjupyter.pipeline+json';

/** What a Pipeline or a PipelineRun sends: its DAG, each step's state, the run. */
export interface IPipelineMime {
  pipeline: Pick<IPipeline, 'name' | 'notebook' | 'edges'> & { steps: Record<string, { name: string; cells: number[] }> };
  states: Record<string, string>;
  run: { id: string; name: string; status: string } | null;
}

function PipelineView(props: { data: IPipelineMime }): JSX.Element {
  const { pipeline, states, run } = props.data;
  const count = Object.keys(pipeline.steps).length;
  return (
    <section
      className="kf-MimePipeline"
      data-pipeline={pipeline.name}
      data-run-id={run?.id ?? ''}
      aria-label={run ? `Pipeline run ${run.id}` : `Pipeline ${pipeline.name}`}
    >
      <header className="kf-MimeStudy-header">
        <span className="kf-StudyDetail-name">{run ? `${pipeline.name} · ${run.id}` : pipeline.name}</span>
        {run ? <StatusBadge status={run.status} /> : null}
        <span className="kf-MimeStudy-progress">
          {count} step{count === 1 ? '' : 's'}
        </span>
      </header>
      <DagView pipeline={pipeline as unknown as IPipeline} states={states ?? {}} />
    </section>
  );
}

/** What job_view.py sends: the job and its metric rows. */
export interface IJobChart {
  id: string;
  name: string;
  kind: string;
  status: string;
  metrics: IMetricRow[];
  channels: IChannel[];
}

interface IContext {
  api: KFApi;
  retrain(id: string): Promise<void>;
  registerBest?(id: string): Promise<void>;
}

function JobView(props: { job: IJobChart }): JSX.Element {
  const { job } = props;
  return (
    <div className="kf-MimeJob" data-job-id={job.id} data-status={job.status}>
      <MetricsChart rows={job.metrics ?? []} channels={job.channels ?? []} height={200} />
    </div>
  );
}

function StudyView(props: { study: IStudy; context: IContext }): JSX.Element {
  const { study, context } = props;
  return (
    <section className="kf-MimeStudy" data-study-id={study.id} data-status={study.status} aria-label={`Study ${study.name}`}>
      <header className="kf-MimeStudy-header">
        <span className="kf-StudyDetail-name">{study.name}</span>
        <StatusBadge status={study.status} />
        <span className="kf-MimeStudy-progress">{progressText(study)}</span>
      </header>
      <BestTrialView study={study} retrainBest={context.retrain} registerBest={context.registerBest} />
      <StudyCharts
        trials={study.trials ?? []}
        objective={study.objective}
        direction={study.direction}
        params={paramNames(study)}
        space={study.space ?? {}}
        loadImportances={() => studyImportances(context.api, study.id)}
      />
    </section>
  );
}

/** One output of either MIME type. */
export class KFRenderer extends ReactWidget implements IRenderMime.IRenderer {
  constructor(
    private readonly _mime: string,
    private readonly _context: IContext
  ) {
    super();
    this.addClass('kf-MimeRenderer');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this._data = model.data[this._mime] as unknown;
    this.update();
    return Promise.resolve();
  }

  protected render(): JSX.Element | null {
    if (!this._data) {
      return null;
    }
    if (this._mime === PIPELINE_MIME) {
      return <PipelineView data={this._data as IPipelineMime} />;
    }
    return this._mime === JOB_MIME ? (
      <JobView job={this._data as IJobChart} />
    ) : (
      <StudyView study={this._data as IStudy} context={this._context} />
    );
  }

  private _data: unknown = null;
}

export const mimePlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:mime-renderer',
  description: "The notebook's job and study views, drawn as the sidebar draws them.",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (app: JupyterFrontEnd, rendermime: IRenderMimeRegistry): void => {
    const api = new KFApi();
    const context: IContext = {
      api,
      retrain: async id => {
        // the Tuning panel's command (it opens the new job); the API alone without it
        const command = 'kfjupyter:retrain-study-best';
        if (app.commands.hasCommand(command)) {
          await app.commands.execute(command, { id });
          return;
        }
        try {
          const job = await retrainBest(api, id);
          await app.commands.execute('kfjupyter:open-job', { id: job.id });
        } catch (error) {
          await showErrorMessage('Cannot retrain with the best params', error as Error);
        }
      },
      // the Tuning panel's command (it asks the model's name)
      registerBest: async id => {
        await app.commands.execute('kfjupyter:register-study-best', { id });
      }
    };
    for (const mime of [JOB_MIME, STUDY_MIME, PIPELINE_MIME]) {
      rendermime.addFactory(
        { safe: true, mimeTypes: [mime], defaultRank: 40, createRenderer: () => new KFRenderer(mime, context) },
        40
      );
    }
  }
};
