/**
 * The Endpoints panel: deployed models (`GET /endpoints`) with status, URL, version(s) and
 * traffic split; a "try it" box (`POST /endpoints/{id}/predict`), the servers' logs (the
 * endpoint job's channels `server/primary`, `server/canary`, `server/router`, streamed
 * while the log is open, the panel shown and the endpoint live; one log open at a time),
 * promote/rollback and undeploy; its health, live: per version the traffic, requests/s,
 * error rate, p50/p95/p99 latency and drift (`GET /endpoints/{id}/stats`, read every
 * `STATS_POLL_MS` while the panel is shown and the endpoint serves). Re-read when an
 * `endpoint` job changes (the jobs model's push channel) and after every action. The
 * logic without React is in `../endpoints`.
 */

import * as React from 'react';

import { Dialog, showDialog } from '@jupyterlab/apputils';

import { KFApi } from '../api';
import {
  buildRequest,
  confirmControl,
  controls,
  convertPayload,
  emptyLogNote,
  ENDPOINT_LOG_TAIL,
  endpointStatus,
  failureSummary,
  formatAnswer,
  IConfirm,
  jobAction,
  healthRows,
  IEndpoint,
  IEndpointStats,
  Protocol,
  servingKey,
  shouldFollow,
  shouldPollStats,
  STATS_POLL_MS,
  trafficSplit
} from '../endpoints';
import { logChannels, pickChannel } from '../logfollower';
import { IJob } from '../types';
import { usePageVisible, VisibilityAwareWidget } from './common';
import { ChannelTabs, useChannelLog } from './logs';

export type { IEndpoint } from '../endpoints';

/** The most lines of a followed endpoint log the panel keeps. */
export const ENDPOINT_LOG_CAPACITY = 2000;

export class EndpointsApi {
  constructor(readonly api: KFApi) {}

  list(): Promise<{ items: IEndpoint[]; total: number }> {
    return this.api.json('endpoints');
  }

  get(id: string): Promise<IEndpoint> {
    return this.api.json(`endpoints/${encodeURIComponent(id)}`);
  }

  deploy(model: string, name?: string): Promise<IEndpoint> {
    return this.api.json('endpoints', { method: 'POST', body: JSON.stringify(name ? { model, name } : { model }) });
  }

  predict(id: string, payload: unknown, protocol: string): Promise<{ version: string | null; response: unknown }> {
    return this.api.json(`endpoints/${encodeURIComponent(id)}/predict?protocol=${protocol}`, {
      method: 'POST',
      body: JSON.stringify(payload)
    });
  }

  control(id: string, what: 'promote' | 'rollback'): Promise<IEndpoint> {
    return this.api.json(`endpoints/${encodeURIComponent(id)}/${what}`, { method: 'POST', body: '{}' });
  }

  undeploy(id: string): Promise<IEndpoint> {
    return this.api.json(`endpoints/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  stats(id: string, window = 60): Promise<IEndpointStats> {
    return this.api.json(`endpoints/${encodeURIComponent(id)}/stats?window=${window}`);
  }
}

// -- dialogs ------------------------------------------------------------------------------------

/** Ask before an action (JupyterLab's dialog): true when the user accepts. */
export async function confirmAction(c: IConfirm): Promise<boolean> {
  const result = await showDialog({
    title: c.title,
    body: c.body,
    buttons: [Dialog.cancelButton(), c.warn ? Dialog.warnButton({ label: c.accept }) : Dialog.okButton({ label: c.accept })]
  });
  return result.button.accept;
}

/** A failure's summary and, folded, its whole text (never a traceback as one paragraph). */
export function FailureText(props: { text: string | null | undefined; className?: string }): JSX.Element | null {
  const { summary, detail } = failureSummary(props.text);
  if (!summary) {
    return null;
  }
  return (
    <div className={`kf-Failure ${props.className ?? ''}`}>
      <div className="kf-Failure-summary">{summary}</div>
      {detail ? (
        <details className="kf-Failure-details">
          <summary>Details</summary>
          <pre className="kf-Failure-detail">{detail}</pre>
        </details>
      ) : null}
    </div>
  );
}

/** A failed action, told in a dialog: its summary, the whole text folded. */
export async function showFailure(title: string, error: unknown): Promise<void> {
  const text = (error as Error)?.message ?? String(error);
  await showDialog({
    title,
    body: <FailureText text={text} className="kf-Failure-dialog" />,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

/**
 * Undeploy an endpoint after asking (the dialog says what stops): true when it was
 * undeployed. For the Jobs list: an endpoint's row calls this instead of Cancel.
 */
export async function undeployEndpoint(api: KFApi, job: IJob): Promise<boolean> {
  const endpoints = new EndpointsApi(api);
  const ep = job.kind === 'endpoint' && 'versions' in job ? (job as IEndpoint) : await endpoints.get(job.id);
  if (!(await confirmAction(confirmControl('undeploy', ep)))) {
    return false;
  }
  try {
    await endpoints.undeploy(job.id);
    return true;
  } catch (error) {
    await showFailure(`Cannot undeploy ${job.name}`, error);
    return false;
  }
}

/**
 * The Jobs list's button for an endpoint job: "Undeploy" (asks first) instead of Cancel;
 * null for a job that is not a live endpoint (the row keeps its own Cancel).
 */
export function EndpointJobAction(props: { api: KFApi; job: IJob; onDone?: () => void }): JSX.Element | null {
  const [busy, setBusy] = React.useState(false);
  if (props.job.kind !== 'endpoint' || jobAction(props.job) !== 'undeploy') {
    return null;
  }
  return (
    <button
      className="jp-Button jp-mod-styled jp-mod-warn kf-Button kf-JobRow-undeploy"
      title={`Stop serving endpoint ${props.job.name}`}
      disabled={busy}
      aria-busy={busy}
      onClick={e => {
        e.stopPropagation();
        setBusy(true);
        void undeployEndpoint(props.api, props.job)
          .then(done => done && props.onDone?.())
          .finally(() => setBusy(false));
      }}
    >
      {busy ? 'Undeploying…' : 'Undeploy'}
    </button>
  );
}

/** Per version: traffic, requests/s, errors, latency, drift; read again while live and shown. */
function EndpointHealth(props: { api: EndpointsApi; ep: IEndpoint; visible: boolean }): JSX.Element | null {
  const { api, ep, visible } = props;
  const poll = shouldPollStats(visible, ep);
  const [stats, setStats] = React.useState<IEndpointStats | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  React.useEffect(() => {
    if (!poll) {
      return;
    }
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = (): void => {
      api
        .stats(ep.id)
        .then(s => live && (setStats(s), setError(null)))
        .catch(e => live && setError((e as Error).message))
        .finally(() => {
          if (live) {
            timer = setTimeout(read, STATS_POLL_MS);
          }
        });
    };
    read();
    return () => {
      live = false;
      if (timer !== undefined) {
        clearTimeout(timer);
      }
    };
  }, [poll, ep.id, servingKey(ep)]);
  if (!poll || (!stats && !error)) {
    return null;
  }
  return (
    <div className="kf-Endpoint-health" aria-label={`Health of ${ep.name}`}>
      {error ? <div className="kf-Endpoint-healtherror">Cannot read the health: {error}</div> : null}
      {stats ? (
        <table className="kf-Endpoint-stats">
          <thead>
            <tr>
              <th>version</th>
              <th>traffic</th>
              <th>req/s</th>
              <th>errors</th>
              <th title="latency percentiles, ms">p50/95/99 ms</th>
            </tr>
          </thead>
          <tbody>
            {healthRows(stats, ep).map(row => (
              <tr
                key={row.key}
                className={`kf-Endpoint-statsrow${row.failing ? ' kf-mod-failing' : ''}${row.drifted ? ' kf-mod-drifted' : ''}`}
                data-version={row.key}
                data-role={row.role}
              >
                <td className="kf-Endpoint-statsversion">
                  {row.key}
                  {row.drift ? <div className="kf-Endpoint-drift">{row.drift}</div> : null}
                </td>
                <td className="kf-Endpoint-traffic">{row.traffic}</td>
                <td className="kf-Endpoint-rate">{row.rate}</td>
                <td className="kf-Endpoint-errors">{row.errors}</td>
                <td className="kf-Endpoint-latency">{row.latency}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}

/**
 * The log of one of the endpoint's servers (its channels; the primary first): followed
 * while it is open, the panel shown and the endpoint live, else its last lines read once.
 */
function EndpointLog(props: { api: EndpointsApi; ep: IEndpoint; visible: boolean; following: boolean }): JSX.Element {
  const { api, ep, visible, following } = props;
  const channels = logChannels(ep);
  const [selected, setSelected] = React.useState<string | null>(null);
  const channel = pickChannel(channels, selected);
  const { buffer: log, state, error } = useChannelLog(api.api, ep.id, {
    channel: channel?.name ?? null,
    tail: ENDPOINT_LOG_TAIL,
    follow: following,
    active: visible,
    capacity: ENDPOINT_LOG_CAPACITY,
    restart: servingKey(ep)
  });
  const read = log.length > 0 || state === 'streaming' || state === 'ended';
  const text = log.length ? log.text() : '';
  const pre = React.useRef<HTMLPreElement>(null);
  /** Follow the newest line unless the user scrolled up to read. */
  const stick = React.useRef(true);
  React.useLayoutEffect(() => {
    const el = pre.current;
    if (el && following && stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [text, following]);
  return (
    <div className="kf-Endpoint-log" data-channel={channel?.name ?? ''} data-stream={state}>
      {channels.length > 1 ? (
        <ChannelTabs
          channels={channels}
          selected={channel?.name ?? null}
          onSelect={setSelected}
          label={`Servers of ${ep.name}`}
        />
      ) : null}
      {error ? (
        <div className="kf-Endpoint-logerror" aria-live="polite">
          Cannot read the log: {error}
          {following && state !== 'failed' ? ' (retrying)' : ''}
        </div>
      ) : null}
      {read ? (
        <pre
          className="kf-Endpoint-logtext"
          data-following={following}
          ref={pre}
          onScroll={e => {
            const el = e.currentTarget;
            stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
          }}
        >
          {text || emptyLogNote(ep)}
        </pre>
      ) : !channel ? (
        <div className="kf-Endpoint-nolog">
          {ep.status === 'Failed' ? '(no log: the server did not start; the reason is above)' : '(no log yet)'}
        </div>
      ) : null}
    </div>
  );
}

function EndpointCard(props: {
  ep: IEndpoint;
  api: EndpointsApi;
  reload: () => void;
  visible: boolean;
  /** Its log is open (one at a time in the panel: one live stream). */
  logsOpen: boolean;
  onToggleLogs: () => void;
}): JSX.Element {
  const { ep, api, reload, visible, logsOpen, onToggleLogs } = props;
  const status = endpointStatus(ep.status);
  const live = status.live;
  const following = shouldFollow(logsOpen, visible, ep.status);
  const [payload, setPayload] = React.useState('{"instances": [[5.1, 3.5, 1.4, 0.2]]}');
  const [protocol, setProtocol] = React.useState<Protocol>('v1');
  const [answer, setAnswer] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  /** The action running (its button says so, every action waits). */
  const [busy, setBusy] = React.useState<string | null>(null);
  const can = controls(ep);

  const act = async (fn: () => Promise<unknown>, what = 'send'): Promise<void> => {
    setBusy(what);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  };
  /** Undeploy, Promote, Rollback: asked first (what will happen), then busy until done. */
  const control = async (what: 'undeploy' | 'promote' | 'rollback'): Promise<void> => {
    if (!(await confirmAction(confirmControl(what, ep)))) {
      return;
    }
    await act(async () => {
      await (what === 'undeploy' ? api.undeploy(ep.id) : api.control(ep.id, what));
      reload();
    }, what);
  };
  const failed = ep.status === 'Failed' ? ep.error || ep.message : null;
  const tryIt = (): Promise<void> =>
    act(async () => {
      setAnswer(null);
      const out = await api.predict(ep.id, buildRequest(payload, protocol), protocol);
      setAnswer(formatAnswer(out.response, out.version));
    });
  const switchProtocol = (to: Protocol): void => {
    setProtocol(to);
    setPayload(text => convertPayload(text, to));
  };
  return (
    <li className="kf-Endpoint" data-endpoint={ep.name} data-status={ep.status}>
      <div className="kf-Endpoint-header">
        <span className="kf-Endpoint-name">{ep.name}</span>
        <span className={`kf-Endpoint-status ${status.className}`}>{status.label}</span>
      </div>
      {ep.url && live ? <div className="kf-Endpoint-url">{ep.url}</div> : null}
      <div className="kf-Endpoint-versions">
        {trafficSplit(ep).map(share => (
          <span key={share.ref} className={`kf-Endpoint-version kf-mod-${share.role}`} data-role={share.role}>
            {share.ref} <span className="kf-Endpoint-percent">{share.percent}%</span>
            {share.role === 'canary' ? <span className="kf-Endpoint-canary"> canary</span> : null}
          </span>
        ))}
      </div>
      {failed ? <FailureText text={failed} className="kf-Endpoint-reason" /> : null}
      {error ? (
        <div className="kf-Endpoint-error" role="alert">
          <FailureText text={error} />
        </div>
      ) : null}
      {busy && busy !== 'send' ? (
        <div className="kf-Endpoint-busy" role="status" aria-live="polite">
          <span className="kf-Spinner" aria-hidden="true" />
          {{ undeploy: 'Undeploying', promote: 'Promoting', rollback: 'Rolling back' }[busy] ?? busy}…
        </div>
      ) : null}
      <EndpointHealth api={api} ep={ep} visible={visible} />
      {live ? (
        <div className="kf-Endpoint-try">
          <textarea
            className="kf-Endpoint-payload"
            aria-label={`Payload for ${ep.name}`}
            value={payload}
            rows={2}
            onChange={e => setPayload(e.target.value)}
          />
          <div className="kf-Endpoint-actions">
            <select aria-label="Protocol" value={protocol} onChange={e => switchProtocol(e.target.value as Protocol)}>
              <option value="v1">V1</option>
              <option value="v2">V2</option>
            </select>
            <button
              className="jp-mod-styled jp-mod-accept kf-Endpoint-send"
              disabled={busy !== null}
              aria-busy={busy === 'send'}
              onClick={() => void tryIt()}
            >
              {busy === 'send' ? 'Sending…' : 'Try it'}
            </button>
            {can.promote ? (
              <button
                className="jp-mod-styled kf-Endpoint-promote"
                disabled={busy !== null}
                aria-busy={busy === 'promote'}
                onClick={() => void control('promote')}
              >
                {busy === 'promote' ? 'Promoting…' : 'Promote'}
              </button>
            ) : null}
            {can.rollback ? (
              <button
                className="jp-mod-styled kf-Endpoint-rollback"
                disabled={busy !== null}
                aria-busy={busy === 'rollback'}
                onClick={() => void control('rollback')}
              >
                {busy === 'rollback' ? 'Rolling back…' : 'Rollback'}
              </button>
            ) : null}
            <button
              className="jp-mod-styled jp-mod-warn kf-Endpoint-undeploy"
              disabled={busy !== null}
              aria-busy={busy === 'undeploy'}
              onClick={() => void control('undeploy')}
            >
              {busy === 'undeploy' ? 'Undeploying…' : 'Undeploy'}
            </button>
          </div>
          {answer !== null ? <pre className="kf-Endpoint-answer">{answer}</pre> : null}
        </div>
      ) : null}
      <div className="kf-Endpoint-logbar">
        <button className="jp-mod-styled kf-Endpoint-logs" aria-pressed={logsOpen} onClick={onToggleLogs}>
          {logsOpen ? 'Hide logs' : 'Logs'}
        </button>
        {following ? (
          <span className="kf-Endpoint-following" title="Streamed as the server writes it">
            following
          </span>
        ) : null}
      </div>
      {logsOpen ? <EndpointLog api={api} ep={ep} visible={visible} following={following} /> : null}
    </li>
  );
}

export function EndpointsPanel(props: { api: EndpointsApi; tick: number; visible?: boolean }): JSX.Element {
  const pageVisible = usePageVisible();
  const visible = (props.visible ?? true) && pageVisible;
  /** The endpoint whose log is open (one at a time). */
  const [openLog, setOpenLog] = React.useState<string | null>(null);
  const [items, setItems] = React.useState<IEndpoint[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  const [own, setOwn] = React.useState(0);
  React.useEffect(() => {
    let live = true;
    props.api
      .list()
      .then(page => live && (setItems(page.items), setError(null)))
      .catch(e => live && setError((e as Error).message));
    return () => {
      live = false;
    };
  }, [props.tick, own]);
  return (
    <div className="kf-EndpointsPanel">
      {error ? (
        <div className="kf-Endpoint-error" role="alert">
          {error}
        </div>
      ) : null}
      {items.length === 0 ? <div className="kf-Endpoints-empty">No endpoints. Deploy a model version from Models.</div> : null}
      <ul className="kf-Endpoints">
        {items.map(ep => (
          <EndpointCard
            key={ep.id}
            ep={ep}
            api={props.api}
            visible={visible}
            reload={() => setOwn(n => n + 1)}
            logsOpen={openLog === ep.id}
            onToggleLogs={() => setOpenLog(open => (open === ep.id ? null : ep.id))}
          />
        ))}
      </ul>
    </div>
  );
}

/** Logs are streamed only while the panel is shown. */
export class EndpointsPanelWidget extends VisibilityAwareWidget {
  private _tick = 0;

  constructor(private readonly _api: EndpointsApi) {
    super();
    this.id = 'kfjupyter-endpoints';
    this.title.label = 'Endpoints';
    this.title.caption = 'Deployed models of the kfjupyter workspace';
    this.addClass('kf-EndpointsPanelWidget');
  }

  /** Re-read the list. */
  refresh(): void {
    this._tick += 1;
    this.update();
  }

  render(): JSX.Element {
    return <EndpointsPanel api={this._api} tick={this._tick} visible={this.isVisible} />;
  }
}
