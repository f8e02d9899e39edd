/**
 * The Endpoints panel: deployed models (`GET /endpoints`) with status, URL, version(s) and
 * traffic split; a "try it" box (`POST /endpoints/{id}/predict`), the server's log,
 * promote/rollback and undeploy. Re-read when an `endpoint` job changes (the jobs model's
 * push channel) and after every action.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import * as React from 'react';

import { KFApi } from '../api';
import { IJob } from '../types';

export interface IEndpoint extends IJob {
  url: string | null;
  versions: Record<string, number>;
  model: string | null;
  canary_percent: number;
}

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

const STATUS_LABEL: Record<string, string> = { Running: 'Ready', Cancelled: 'Undeployed' };

function EndpointCard(props: { ep: IEndpoint; api: EndpointsApi; reload: () => void }): JSX.Element {
  const { ep, api, reload } = props;
  const live = ep.status === 'Running' || ep.status === 'Pending';
  const [payload, setPayload] = React.useState('{"instances": [[5.1, 3.5, 1.4, 0.2]]}');
  const [protocol, setProtocol] = React.useState('v1');
  const [answer, setAnswer] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [logs, setLogs] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);

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
      let body: unknown;
      try {
        body = JSON.parse(payload);
      } catch {
        throw new Error('The payload is not JSON');
      }
      const out = await api.predict(ep.id, body, protocol);
      setAnswer(JSON.stringify(out.response) + (out.version ? `  (from ${out.version})` : ''));
    });
  const versions = Object.entries(ep.versions || {});
  return (
    <li className="kf-Endpoint" data-endpoint={ep.name} data-status={ep.status}>
      <div className="kf-Endpoint-header">
        <span className="kf-Endpoint-name">{ep.name}</span>
        <span className={`kf-Endpoint-status kf-status-${ep.status.toLowerCase()}`}>
          {STATUS_LABEL[ep.status] ?? ep.status}
        </span>
      </div>
      {ep.url && live ? <div className="kf-Endpoint-url">{ep.url}</div> : null}
      <div className="kf-Endpoint-versions">
        {versions.map(([ref, pct]) => (
          <span key={ref} className="kf-Endpoint-version">
            {ref} <span className="kf-Endpoint-percent">{pct}%</span>
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
            <select aria-label="Protocol" value={protocol} onChange={e => setProtocol(e.target.value)}>
              <option value="v1">V1</option>
              <option value="v2">V2</option>
            </select>
            <button className="jp-mod-styled jp-mod-accept kf-Endpoint-send" disabled={busy} onClick={() => void tryIt()}>
              Try it
            </button>
            <button
              className="jp-mod-styled kf-Endpoint-logs"
              disabled={busy}
              onClick={() => void act(async () => setLogs(logs === null ? (await api.logs(ep.id)).text : null))}
            >
              Logs
            </button>
            {ep.canary_percent > 0 ? (
              <button
                className="jp-mod-styled kf-Endpoint-promote"
                disabled={busy}
                onClick={() => void act(async () => (await api.control(ep.id, 'promote'), reload()))}
              >
                Promote
              </button>
            ) : null}
            {ep.canary_percent > 0 || ep.spec?.previous ? (
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
      {logs !== null ? <pre className="kf-Endpoint-logtext">{logs || '(empty)'}</pre> : null}
    </li>
  );
}

export function EndpointsPanel(props: { api: EndpointsApi; tick: number }): JSX.Element {
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
          <EndpointCard key={ep.id} ep={ep} api={props.api} reload={() => setOwn(n => n + 1)} />
        ))}
      </ul>
    </div>
  );
}

export class EndpointsPanelWidget extends ReactWidget {
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
    return <EndpointsPanel api={this._api} tick={this._tick} />;
  }
}
