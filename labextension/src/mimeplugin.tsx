/**
 * The notebook's job and study views, drawn by the same React components as the sidebar:
 * a MIME renderer of `application/vnd.kfjupyter.job+json` (a job's metrics chart, as its
 * tab shows it) and `application/vnd.kfjupyter.study+json` (a study's best trial, its
 * charts and "Retrain with the best", as the Tuning panel shows them). The Python views
 * (kfjupyter/widgets/job_view.py, study_view.py) send these with plain HTML beside them,
 * which is what a notebook shows where this extension is not installed.
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
import { BestTrialView } from './components/tuning';
import { retrainBest, studyImportances } from './studies';
import { paramNames, progressText } from './tuning';
import { IChannel, IMetricRow, IStudy } from './types';

export const JOB_MIME = 'application/vnd.kfjupyter.job+json';
export const STUDY_MIME = 'application/vnd.kfjupyter.study+json';

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
    for (const mime of [JOB_MIME, STUDY_MIME]) {
      rendermime.addFactory(
        { safe: true, mimeTypes: [mime], defaultRank: 40, createRenderer: () => new KFRenderer(mime, context) },
        40
      );
    }
  }
};
