/**
 * The Endpoints panel: deployed models (`GET /endpoints`) with status, URL, version(s) and
 * traffic split; a "try it" box (`POST /endpoints/{id}/predict`), the server's log
 * (followed: re-read every 2 s while it is open, the panel shown and the endpoint live),
 * promote/rollback and undeploy. Re-read when an `endpoint` job changes (the jobs model's
 * push channel) and after every action. The logic without React is in `../endpoints`.
 */

import * as React from 'react';

import { KFApi } from '../api';
import {
  buildRequest,
  controls,
  convertPayload,
  endpointStatus,
  formatAnswer,
  IEndpoint,
  LogFollower,
  Protocol,
  shouldFollow,
  trafficSplit
} from '../endpoints';
import { VisibilityAwareWidget } from './common';

export type { IEndpoint } from '../endpoints';

/** Milliseconds between two reads of a followed log. */
export const LOG_POLL_MS = 2000;

export class EndpointsApi {
  constructor(readonly api: KFApi) {}

  list(): Promise<{ items: IEndpoint[]; total: number }> {
    return this.api.json('endpoints');
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

  logs(id: string): Promise<{ text: string }> {
    return this.api.json(`endpoints/${encodeURIComponent(id)}/logs?tail=200`);
  }
}

/** A followed log: its text, whether it is followed, and the last read's error ('' once a read succeeds). */
function useLog(api: EndpointsApi, ep: IEndpoint, open: boolean, visible: boolean): [string | null, boolean, string] {
  const [text, setText] = React.useState<string | null>(null);
  const [error, setError] = React.useState('');
  const follow = shouldFollow(open, visible, ep.status);
  React.useEffect(() => {
    if (!open) {
      setText(null);
      setError('');
      return;
    }
    const read = async (): Promise<string> => (await api.logs(ep.id)).text;
    const onText = (t: string): void => {
      setText(t);
      setError('');
    };
    if (!follow) {
      let current = true;
      if (visible) {
        // an endpoint that stopped: its last log, once
        read()
          .then(t => current && onText(t))
          .catch(e => current && setError((e as Error).message));
      }
      return () => {
        current = false;
      };
    }
    const follower = new LogFollower(read, onText, {
      interval: LOG_POLL_MS,
      paused: () => typeof document !== 'undefined' && document.visibilityState === 'hidden',
      onError: e => setError(e.message)
    });
    follower.start();
    return () => follower.stop();
  }, [open, follow, visible, ep.id]);
  return [text, follow, error];
}

function EndpointCard(props: { ep: IEndpoint; api: EndpointsApi; reload: () => void; visible: boolean }): JSX.Element {
  const { ep, api, reload, visible } = props;
  const status = endpointStatus(ep.status);
  const live = status.live;
  const [payload, setPayload] = React.useState('{"instances": [[5.1, 3.5, 1.4, 0.2]]}');
  const [protocol, setProtocol] = React.useState<Protocol>('v1');
  const [answer, setAnswer] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [logsOpen, setLogsOpen] = React.useState(false);
  const [logs, following, logError] = useLog(api, ep, logsOpen, visible);
  const [busy, setBusy] = React.useState(false);
  const can = controls(ep);

  const act = async (fn: () => Promise<unknown>): Promise<void> => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
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
      {error ? (
        <div className="kf-Endpoint-error" role="alert">
          {error}
        </div>
      ) : null}
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
            <button className="jp-mod-styled jp-mod-accept kf-Endpoint-send" disabled={busy} onClick={() => void tryIt()}>
              Try it
            </button>
            {can.promote ? (
              <button
                className="jp-mod-styled kf-Endpoint-promote"
                disabled={busy}
                onClick={() => void act(async () => (await api.control(ep.id, 'promote'), reload()))}
              >
                Promote
              </button>
            ) : null}
            {can.rollback ? (
              <button
                className="jp-mod-styled kf-Endpoint-rollback"
                disabled={busy}
                onClick={() => void act(async () => (await api.control(ep.id, 'rollback'), reload()))}
              >
                Rollback
              </button>
            ) : null}
            <button
              className="jp-mod-styled jp-mod-warn kf-Endpoint-undeploy"
              disabled={busy}
              onClick={() => void act(async () => (await api.undeploy(ep.id), reload()))}
            >
              Undeploy
            </button>
          </div>
          {answer !== null ? <pre className="kf-Endpoint-answer">{answer}</pre> : null}
        </div>
      ) : null}
      <div className="kf-Endpoint-logbar">
        <button
          className="jp-mod-styled kf-Endpoint-logs"
          aria-pressed={logsOpen}
          onClick={() => setLogsOpen(open => !open)}
        >
          {logsOpen ? 'Hide logs' : 'Logs'}
        </button>
        {logsOpen && following ? (
          <span className="kf-Endpoint-following" title="Re-read every few seconds">
            following
          </span>
        ) : null}
      </div>
      {logsOpen && logError ? (
        <div className="kf-Endpoint-logerror" aria-live="polite">
          Cannot read the log: {logError}
          {following ? ' (retrying)' : ''}
        </div>
      ) : null}
      {logsOpen && logs !== null ? (
        <pre className="kf-Endpoint-logtext" data-following={following}>
          {logs || '(empty)'}
        </pre>
      ) : null}
    </li>
  );
}

export function EndpointsPanel(props: { api: EndpointsApi; tick: number; visible?: boolean }): JSX.Element {
  const visible = props.visible ?? true;
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
          <EndpointCard key={ep.id} ep={ep} api={props.api} visible={visible} reload={() => setOwn(n => n + 1)} />
        ))}
      </ul>
    </div>
  );
}

/** Logs follow only while the panel is shown. */
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
