/**
 * The Jobs panel of the Kubeflow sidebar: every job of the workspace, live.
 */

import * as React from 'react';

import { HTMLSelect, ReactWidget } from '@jupyterlab/ui-components';

import { KFApi } from '../api';
import { formatStart, jobTag, notebookApiPath } from '../format';
import { EndpointJobAction } from './endpoints';
import { Connection, JobsModel } from '../model';
import { activeCount, IJobEntry } from '../state';
import { isTerminal, JOB_STATUSES, KNOWN_KINDS } from '../types';
import { Button, Duration, StatusBadge, useNow, useSignal } from './common';

/** What a row's buttons do (the plugin's commands). */
export interface IJobActions {
  open(id: string): void;
  cancel(id: string): Promise<void>;
  openSource(id: string): void;
}

export function ConnectionDot(props: { connection: Connection }): JSX.Element {
  const labels: Record<Connection, string> = {
    live: 'Live: updates are pushed by the server',
    connecting: 'Connecting to the server…',
    offline: 'Offline: reconnecting…'
  };
  return (
    <span
      className={`kf-Connection kf-mod-${props.connection}`}
      title={labels[props.connection]}
      data-connection={props.connection}
    >
      <span className="kf-Connection-dot" aria-hidden="true" />
      {props.connection === 'live' ? 'live' : props.connection}
    </span>
  );
}

function JobRow(props: {
  entry: IJobEntry;
  now: number;
  actions: IJobActions;
  serverRoot: string;
  api: KFApi;
}): JSX.Element {
  const { entry, now, actions, serverRoot, api } = props;
  const { job } = entry;
  const [cancelling, setCancelling] = React.useState(false);
  const active = !isTerminal(job.status);
  const notebook = notebookApiPath(job.notebook, serverRoot);
  const open = () => actions.open(job.id);
  return (
    <li
      className={`kf-JobRow kf-status-${job.status.toLowerCase()}`}
      data-job-id={job.id}
      data-job-name={job.name}
      data-status={job.status}
      tabIndex={0}
      title={`${job.name} (${job.id}): open the job`}
      onClick={open}
      onKeyDown={e => {
        if (e.key === 'Enter') {
          open();
        }
      }}
    >
      <div className="kf-JobRow-line">
        <span className="kf-JobRow-name">
          {job.name}{' '}
          <span className="kf-JobRow-id" title={`Job id ${job.id}`}>
            {jobTag(job)}
          </span>
        </span>
        <StatusBadge status={job.status} />
      </div>
      <div className="kf-JobRow-line kf-JobRow-meta">
        <span>
          {job.kind} · {job.workers} {job.workers === 1 ? 'worker' : 'workers'} ·{' '}
          {job.backend}
        </span>
        <span className="kf-JobRow-time">
          <Duration job={job} receivedAt={entry.receivedAt} now={now} />
          <span className="kf-JobRow-started">{formatStart(job.created_at, now)}</span>
        </span>
      </div>
      {job.status === 'Failed' && job.error ? (
        <div className="kf-JobRow-error" title={job.error}>
          {job.error.split('\n').filter(Boolean).slice(-1)[0]}
        </div>
      ) : null}
      <div className="kf-JobRow-actions" onClick={e => e.stopPropagation()}>
        {notebook ? (
          <Button
            className="kf-OpenSource"
            title={`Open ${notebook} at the cell that started the job`}
            onClick={() => actions.openSource(job.id)}
          >
            Open cell
          </Button>
        ) : null}
        {job.kind === 'endpoint' ? (
          // an endpoint is stopped by undeploying it (what the Endpoints panel does)
          <EndpointJobAction api={api} job={job} />
        ) : active ? (
          <Button
            accent="warn"
            className="kf-Cancel"
            disabled={cancelling}
            title="Cancel the job: stop every rank"
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
      </div>
    </li>
  );
}

export function JobsPanel(props: {
  model: JobsModel;
  actions: IJobActions;
  serverRoot: string;
}): JSX.Element {
  const { model, actions, serverRoot } = props;
  const state = useSignal(model.stateChanged, () => model.state);
  const now = useNow(activeCount(state) > 0);
  const kinds = [...new Set([...KNOWN_KINDS, ...state.kinds])];
  const backend = model.userSettings.defaultBackend || model.serverSettings?.default_backend;
  const namespace = model.userSettings.namespace || model.serverSettings?.namespace;

  return (
    <div className="kf-JobsPanel">
      <div className="kf-JobsPanel-toolbar">
        <label className="kf-Filter">
          <span className="kf-Filter-label">Kind</span>
          <HTMLSelect
            className="kf-Filter-select"
            aria-label="Kind"
            data-filter="kind"
            value={state.filters.kind}
            onChange={e => model.setFilters({ ...state.filters, kind: e.target.value })}
            options={[{ value: '', label: 'all' }, ...kinds]}
          />
        </label>
        <label className="kf-Filter">
          <span className="kf-Filter-label">Status</span>
          <HTMLSelect
            className="kf-Filter-select"
            aria-label="Status"
            data-filter="status"
            value={state.filters.status}
            onChange={e => model.setFilters({ ...state.filters, status: e.target.value })}
            options={[{ value: '', label: 'all' }, ...JOB_STATUSES]}
          />
        </label>
      </div>
      {state.error ? (
        <div className="kf-JobsPanel-error" role="alert">
          {state.error}
        </div>
      ) : null}
      {state.loaded && state.entries.length === 0 ? (
        <div className="kf-JobsPanel-empty">
          {state.filters.kind || state.filters.status ? (
            'No job matches the filters.'
          ) : (
            <>
              No jobs yet. Run a <code>%%kf_train --workers 2</code> cell (after{' '}
              <code>%load_ext kfjupyter</code>) and it shows up here.
            </>
          )}
        </div>
      ) : null}
      <ul className="kf-JobList" aria-label="Jobs">
        {state.entries.map(entry => (
          <JobRow
            key={entry.job.id}
            entry={entry}
            now={now}
            actions={actions}
            serverRoot={serverRoot}
            api={model.api}
          />
        ))}
      </ul>
      <div className="kf-JobsPanel-footer">
        <span className="kf-JobsPanel-count">
          {state.loaded
            ? `${state.entries.length} of ${state.total} ${state.total === 1 ? 'job' : 'jobs'}`
            : 'Loading…'}
        </span>
        {state.entries.length < state.total ? (
          <Button onClick={() => void model.loadMore()}>Load more</Button>
        ) : null}
        {backend ? (
          <span
            className="kf-JobsPanel-backend"
            title="Default backend and namespace (Settings → Kubeflow)"
          >
            {backend}
            {namespace ? ` · ${namespace}` : ''}
          </span>
        ) : null}
      </div>
    </div>
  );
}

/** The push channel's state, for the sidebar's toolbar. */
export class ConnectionWidget extends ReactWidget {
  constructor(private readonly _model: JobsModel) {
    super();
    this.addClass('kf-ConnectionWidget');
  }

  protected render(): JSX.Element {
    return <LiveConnection model={this._model} />;
  }
}

function LiveConnection(props: { model: JobsModel }): JSX.Element {
  const { model } = props;
  const connection = useSignal(model.connectionChanged, () => model.connection);
  return <ConnectionDot connection={connection} />;
}

/** The Jobs section of the sidebar. */
export class JobsPanelWidget extends ReactWidget {
  constructor(
    private readonly _options: {
      model: JobsModel;
      actions: IJobActions;
      serverRoot: string;
    }
  ) {
    super();
    this.id = 'kfjupyter-jobs';
    this.title.label = 'Jobs';
    this.title.caption = 'Jobs of the kfjupyter workspace';
    this.addClass('kf-JobsPanelWidget');
  }

  protected render(): JSX.Element {
    return <JobsPanel {...this._options} />;
  }
}
