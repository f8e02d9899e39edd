/**
 * A job's tab in the main area: its state, log (a tab per log channel, live), metrics
 * chart, Cancel, and the way back to the cell that started it.
 */

import * as React from 'react';

import { MainAreaWidget } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';

import { formatDuration, jobDuration, jobTag, notebookApiPath, parseTime } from '../format';
import { JobsModel } from '../model';
import { IJob, IMetricRow, isTerminal } from '../types';
import { MetricsChart } from './chart';
import { Button, Duration, StatusBadge, useNow, useSignal, VisibilityAwareWidget } from './common';
import { IJobActions } from './jobs';
import { LogViewer } from './logs';
import { NotebookRunView } from './notebookrun';
import { kubeflowIcon } from '../icons';

/** How often the metrics of a running job are re-read (they have no push channel). */
export const METRICS_REFRESH_MS = 3000;

function useJob(model: JobsModel, id: string): IJob | undefined {
  const job = useSignal(model.jobChanged, () => model.job(id));
  React.useEffect(() => {
    if (!model.job(id)) {
      model.fetchJob(id).catch(() => undefined);
    }
  }, [model, id]);
  return job;
}

function useMetrics(model: JobsModel, job: IJob | undefined, visible: boolean): IMetricRow[] {
  const [rows, setRows] = React.useState<IMetricRow[]>([]);
  const id = job?.id;
  const active = job ? !isTerminal(job.status) && visible : false;
  React.useEffect(() => {
    if (!id) {
      return;
    }
    const abort = new AbortController();
    const load = () =>
      model.api
        .metrics(id, undefined, abort.signal)
        .then(m => setRows(m.metrics))
        .catch(() => undefined);
    void load();
    // While the job runs, re-read now and then; once it ends, the load above
    // (this effect re-runs when `active` flips) picks up the last reports.
    const timer = active ? window.setInterval(load, METRICS_REFRESH_MS) : 0;
    return () => {
      abort.abort();
      if (timer) {
        window.clearInterval(timer);
      }
    };
  }, [model, id, active]);
  return rows;
}

function Field(props: { label: string; children: React.ReactNode }): JSX.Element {
  return (
    <div className="kf-Field">
      <dt>{props.label}</dt>
      <dd>{props.children}</dd>
    </div>
  );
}

function time(iso: string | null | undefined): string {
  const t = parseTime(iso);
  return isNaN(t) ? '–' : new Date(t).toLocaleString();
}

export function JobDetail(props: {
  model: JobsModel;
  id: string;
  actions: IJobActions;
  serverRoot: string;
  /** Whether the tab is shown (hidden tabs hold no stream or timer). */
  visible?: boolean;
}): JSX.Element {
  const { model, id, actions, serverRoot, visible = true } = props;
  const job = useJob(model, id);
  const metrics = useMetrics(model, job, visible);
  const now = useNow(job ? !isTerminal(job.status) && visible : false);
  const [cancelling, setCancelling] = React.useState(false);

  if (!job) {
    return <div className="kf-JobDetail kf-JobDetail-loading">Loading job {id}…</div>;
  }
  const notebook = notebookApiPath(job.notebook, serverRoot);
  const active = !isTerminal(job.status);
  return (
    <div className="kf-JobDetail" data-job-id={job.id} data-status={job.status}>
      <header className="kf-JobDetail-header">
        <h2 className="kf-JobDetail-name">{job.name}</h2>
        <StatusBadge status={job.status} />
        <span className="kf-JobDetail-duration">
          <Duration job={job} now={now} />
        </span>
        <span className="kf-JobDetail-spacer" />
        {notebook ? (
          <Button className="kf-OpenSource" onClick={() => actions.openSource(job.id)}>
            Open cell
          </Button>
        ) : null}
        {active ? (
          <Button
            accent="warn"
            className="kf-Cancel"
            disabled={cancelling}
            onClick={async () => {
              setCancelling(true);
              try {
                await actions.cancel(job.id);
              } finally {
                setCancelling(false);
              }
            }}
          >
            {cancelling ? 'Cancelling…' : 'Cancel'}
          </Button>
        ) : null}
      </header>
      <dl className="kf-JobDetail-fields">
        <Field label="id">
          <code>{job.id}</code>
        </Field>
        <Field label="kind">{job.kind}</Field>
        <Field label="backend">{job.backend}</Field>
        <Field label="workers">{job.workers}</Field>
        <Field label="created">{time(job.created_at)}</Field>
        <Field label="started">{time(job.started_at)}</Field>
        <Field label="finished">{time(job.finished_at)}</Field>
        <Field label="duration">{formatDuration(jobDuration(job, now))}</Field>
        {notebook ? <Field label="notebook">{notebook}</Field> : null}
      </dl>
      {job.message ? <div className="kf-JobDetail-message">{job.message}</div> : null}
      {job.error ? (
        <pre className="kf-JobDetail-error" role="alert">
          {job.error}
        </pre>
      ) : null}
      {job.kind === 'notebook' || job.kind === 'sweep' ? <NotebookRunView job={job} api={model.api} visible={visible} /> : null}
      <section className="kf-JobDetail-section">
        <h3>Metrics</h3>
        <MetricsChart rows={metrics} channels={job.channels?.metrics} />
      </section>
      <section className="kf-JobDetail-section kf-JobDetail-logs">
        <h3>Logs</h3>
        <LogViewer api={model.api} job={job} visible={visible} />
      </section>
    </div>
  );
}

class JobDetailContent extends VisibilityAwareWidget {
  constructor(private readonly _props: React.ComponentProps<typeof JobDetail>) {
    super();
    this.addClass('kf-JobDetailContent');
  }

  protected render(): JSX.Element {
    return <JobDetail {...this._props} visible={this.isVisible} />;
  }
}

/** The main-area tab of one job. */
export class JobDetailWidget extends MainAreaWidget<ReactWidget> {
  constructor(readonly props: React.ComponentProps<typeof JobDetail>) {
    super({ content: new JobDetailContent(props) });
    this.id = `kfjupyter-job-${props.id}`;
    this.addClass('kf-JobDetailWidget');
    this.title.icon = kubeflowIcon;
    this.title.closable = true;
    const job = props.model.job(props.id);
    this._setTitle(job);
    props.model.jobChanged.connect(this._onJob, this);
  }

  get jobId(): string {
    return this.props.id;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.props.model.jobChanged.disconnect(this._onJob, this);
    super.dispose();
  }

  private _onJob(_: JobsModel, job: IJob): void {
    if (job.id === this.props.id) {
      this._setTitle(job);
    }
  }

  private _setTitle(job: IJob | undefined): void {
    this.title.label = job ? `Job ${job.name} · ${jobTag(job)}` : `Job ${this.props.id}`;
    this.title.caption = job ? `${job.name} (${job.id}): ${job.status}` : this.props.id;
  }
}
