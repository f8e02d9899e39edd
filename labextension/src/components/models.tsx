/**
 * The Models panel of the Kubeflow sidebar: search and filter registered models
 * (server-side, a page at a time with "Load more"), a model's versions with their
 * metrics side by side and a bar chart of a chosen metric, lineage links (job tab,
 * notebook), aliases (set/move, history), archive/restore, artifact download.
 * The Deploy button is hidden until the serving API is wired (`actions.deploy`).
 */

import * as React from 'react';

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';

import { endpointsServing } from '../endpoints';
import {
  aliasMoveText,
  appendPage,
  comparisonBars,
  deployState,
  describeAliasEvent,
  differingParams,
  formatBytes,
  formatMetric,
  IAliasHistory,
  IArtifactFile,
  IModelFilter,
  IModelVersion,
  inputRecord,
  IRegisteredModel,
  metricNames,
  ModelsApi,
  paramsLine,
  parseMetricFilter,
  plural,
  versionParams,
  versionSize
} from '../models';
import { formatStart } from '../format';
import { Button } from './common';

/** What the panel hands to the plugin (commands of the app). */
export interface IModelActions {
  openJob(id: string): void;
  openNotebook(path: string): void;
  /** Deploy a version; when absent (serving not wired yet) the Deploy button is hidden. */
  deploy?: (model: string, version: number) => Promise<void>;
}

function errorText(error: unknown): string {
  return (error as Error)?.message ?? String(error);
}

function ComparisonChart(props: { versions: IModelVersion[]; metric: string }): JSX.Element {
  const width = 260;
  const height = 104;
  const top = 14; // room for the values above the bars
  const { bars, min, max } = comparisonBars(props.versions, props.metric, width, height - top, 14);
  return (
    <svg
      className="kf-ModelChart"
      viewBox={`0 0 ${width} ${height}`}
      width="100%"
      height={height}
      role="img"
      aria-label={`${props.metric} by version`}
    >
      <title>{`${props.metric}: ${formatMetric(min)} … ${formatMetric(max)}`}</title>
      {bars.map(b => (
        <g key={b.label} transform={`translate(0 ${top})`}>
          <rect className="kf-ModelChart-bar" x={b.x} y={b.y} width={b.width} height={b.height}>
            <title>{`${b.label}: ${formatMetric(b.value)}`}</title>
          </rect>
          <text className="kf-ModelChart-value" x={b.x + b.width / 2} y={b.y - 3} textAnchor="middle">
            {formatMetric(b.value)}
          </text>
          <text className="kf-ModelChart-label" x={b.x + b.width / 2} y={height - top - 2} textAnchor="middle">
            {b.label}
          </text>
        </g>
      ))}
      <line className="kf-ModelChart-axis" x1={0} x2={width} y1={height - 14} y2={height - 14} />
    </svg>
  );
}

function Lineage(props: { version: IModelVersion; actions: IModelActions }): JSX.Element | null {
  const { lineage } = props.version;
  const job = typeof lineage.job_id === 'string' ? lineage.job_id : null;
  const notebook = typeof lineage.notebook === 'string' ? lineage.notebook : null;
  if (!job && !notebook) {
    return null;
  }
  return (
    <span className="kf-ModelLineage">
      {job ? (
        <a href="#" className="kf-ModelLineage-job" title={`Open job ${job}`} onClick={e => {
          e.preventDefault();
          props.actions.openJob(job);
        }}>
          {String(lineage.job_name ?? job)}
        </a>
      ) : null}
      {notebook ? (
        <a href="#" className="kf-ModelLineage-notebook" title={`Open ${notebook}`} onClick={e => {
          e.preventDefault();
          props.actions.openNotebook(notebook);
        }}>
          {notebook.split('/').pop()}
        </a>
      ) : null}
    </span>
  );
}

/** A version's card: what it is and where it came from, and its actions (they wrap at 300 px). */
function VersionCard(props: {
  api: ModelsApi;
  model: string;
  version: IModelVersion;
  actions: IModelActions;
  act: (fn: () => Promise<unknown>) => Promise<void>;
  onFiles: (version: number) => void;
}): JSX.Element {
  const { model, version: v, actions, act } = props;
  const params = versionParams(v);
  const size = versionSize(v);
  const inputs = inputRecord(v);
  const deploy = deployState(v);
  const [deploying, setDeploying] = React.useState(false);
  return (
    <section className="kf-VersionCard" data-version={v.number ?? ''} aria-label={`Version ${v.ref}`}>
      <header className="kf-VersionCard-header">
        <span className="kf-VersionCard-ref">{v.ref}</span>
        <span className="kf-VersionCard-framework">{v.framework}</span>
        {v.state === 'ARCHIVED' ? <span className="kf-ArchivedChip">archived</span> : null}
      </header>
      {v.description ? <div className="kf-VersionCard-description">{v.description}</div> : null}
      <dl className="kf-VersionCard-facts">
        <dt>created</dt>
        <dd className="kf-VersionCard-created" title={v.created_at ?? ''}>
          {v.created_at ? new Date(v.created_at).toLocaleString() : '–'}
          {v.author ? ` · ${v.author}` : ''}
        </dd>
        <dt>params</dt>
        <dd className="kf-VersionCard-params">
          {Object.keys(params).length ? paramsLine(params) : <span className="kf-muted">none recorded</span>}
          {v.run ? (
            <span className="kf-VersionCard-run" title={`tracking run ${v.run.run_id}`}>
              {' '}
              (run {v.run.name ?? v.run.run_id})
            </span>
          ) : null}
        </dd>
        <dt>size</dt>
        <dd className="kf-VersionCard-size">
          {formatBytes(size)}
          {(v.artifacts ?? []).length > 1
            ? ` (${(v.artifacts ?? []).map(a => `${a.name} ${formatBytes(a.size)}`).join(', ')})`
            : ''}
        </dd>
        {inputs.signature ? (
          <>
            <dt>signature</dt>
            <dd className="kf-VersionCard-signature">
              <code>{inputs.signature}</code>
            </dd>
          </>
        ) : null}
        {inputs.example || inputs.sample ? (
          <>
            <dt>input</dt>
            <dd className="kf-VersionCard-example">
              {inputs.example ? <code>{inputs.example}</code> : null}
              {inputs.sample ? <span>{inputs.example ? ' · ' : ''}training sample recorded</span> : null}
            </dd>
          </>
        ) : null}
        {typeof v.lineage?.job_id === 'string' || typeof v.lineage?.notebook === 'string' ? (
          <>
            <dt>from</dt>
            <dd>
              <Lineage version={v} actions={actions} />
            </dd>
          </>
        ) : null}
      </dl>
      {v.number !== null ? (
        <div className="kf-VersionCard-actions kf-ModelVersion-actions" role="toolbar" aria-label={`Actions of ${v.ref}`}>
          {actions.deploy ? (
            <span className="kf-ModelVersion-deploywrap" title={deploy.reason}>
              <Button
                className="kf-ModelVersion-deploy"
                disabled={!deploy.enabled || deploying}
                aria-busy={deploying}
                aria-label={deploy.enabled ? `Deploy ${v.ref}` : `Deploy ${v.ref}: ${deploy.reason}`}
                title={deploy.reason}
                data-reason={deploy.enabled ? undefined : deploy.reason}
                onClick={() => {
                  setDeploying(true);
                  void act(() => actions.deploy!(model, v.number as number)).finally(() => setDeploying(false));
                }}
              >
                {deploying ? 'Deploying…' : 'Deploy'}
              </Button>
            </span>
          ) : null}
          <Button title="The artifact's files, to download" onClick={() => props.onFiles(v.number as number)}>
            Files
          </Button>
          <Button
            title={v.state === 'ARCHIVED' ? 'Restore this version' : 'Archive this version'}
            onClick={() => void act(() => props.api.setState(model, v.number as number, v.state !== 'ARCHIVED'))}
          >
            {v.state === 'ARCHIVED' ? 'Restore' : 'Archive'}
          </Button>
        </div>
      ) : null}
      {!deploy.enabled && actions.deploy && v.state !== 'ARCHIVED' ? (
        <div className="kf-VersionCard-why">Deploy: {deploy.reason}</div>
      ) : null}
    </section>
  );
}

function ModelDetail(props: {
  api: ModelsApi;
  model: IRegisteredModel;
  actions: IModelActions;
  onChanged: () => void;
  /** Bumped when the registry changed (a push event, the refresh button): read again. */
  tick: number;
}): JSX.Element {
  const { api, model, actions } = props;
  const [versions, setVersions] = React.useState<IModelVersion[]>([]);
  const [next, setNext] = React.useState<number | null>(null);
  const [total, setTotal] = React.useState<number | null>(null);
  const [history, setHistory] = React.useState<IAliasHistory | null>(null);
  const [metric, setMetric] = React.useState('');
  const [aliasName, setAliasName] = React.useState('production');
  const [aliasVersion, setAliasVersion] = React.useState<number | null>(null);
  const [error, setError] = React.useState('');
  const [files, setFiles] = React.useState<{ version: number; files: IArtifactFile[] } | null>(null);
  const [reload, setReload] = React.useState(0);
  const [chosenVersion, setChosenVersion] = React.useState<string | null>(null);

  React.useEffect(() => {
    const ctrl = new AbortController();
    setError('');
    Promise.all([api.listVersions(model.name, 0, {}, ctrl.signal), api.aliases(model.name)])
      .then(([page, aliases]) => {
        setVersions(page.items);
        setNext(page.next_offset);
        setTotal(page.total);
        setHistory(aliases);
      })
      .catch(e => {
        if ((e as Error).name !== 'AbortError') {
          setError(errorText(e));
        }
      });
    return () => ctrl.abort();
  }, [model.name, reload, props.tick]);

  const names = metricNames(versions);
  const paramNames = differingParams(versions).slice(0, 4);
  const chosen = names.includes(metric) ? metric : names[0] ?? '';
  const target = aliasVersion ?? versions[0]?.number ?? null;
  const selected = versions.find(v => v.id === chosenVersion) ?? versions[0] ?? null;

  const act = async (fn: () => Promise<unknown>) => {
    setError('');
    try {
      await fn();
      setReload(r => r + 1);
      props.onChanged();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const more = async () => {
    if (next === null) {
      return;
    }
    try {
      const page = await api.listVersions(model.name, next);
      setVersions(v => appendPage(v, page, x => x.id));
      setNext(page.next_offset);
    } catch (e) {
      setError(errorText(e));
    }
  };
  const download = async (version: number, path: string) => {
    try {
      const blob = await api.download(model.name, version, path);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = path.split('/').pop() || 'artifact';
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      setError(errorText(e));
    }
  };
  const showFiles = (version: number) =>
    void api
      .files(model.name, version)
      .then(f => setFiles({ version, files: f.files }))
      .catch(e => setError(errorText(e)));
  /** Set or move an alias, after saying what it changes (which endpoints serve the old version). */
  const setAlias = async (alias: string, to: number) => {
    const from = history?.aliases[alias] ?? model.aliases[alias] ?? null;
    if (from === to) {
      return;
    }
    if (from !== null) {
      let serving: ReturnType<typeof endpointsServing> = [];
      try {
        serving = endpointsServing((await api.endpoints()).items, `${model.name}:${from}`);
      } catch {
        serving = [];
      }
      const text = aliasMoveText(model.name, alias, from, to, serving);
      const answer = await showDialog({
        title: text.title,
        body: text.body,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: `Move ${alias}` })]
      });
      if (!answer.button.accept) {
        return;
      }
    }
    await act(() => api.setAlias(model.name, alias, to));
  };

  return (
    <section className="kf-ModelDetail" aria-label={`Versions of ${model.name}`}>
      <header className="kf-ModelDetail-header">
        <span className="kf-ModelDetail-title">{model.name}</span>
        <span className="kf-ModelDetail-count">
          {total !== null && total > versions.length
            ? `${versions.length} of ${plural(total, 'version')}`
            : plural(versions.length, 'version')}
        </span>
      </header>
      {model.description ? <div className="kf-ModelDetail-description">{model.description}</div> : null}
      {error ? (
        <div className="kf-TuningPanel-error kf-ModelPanel-error" role="alert">
          {error}
        </div>
      ) : null}
      {names.length ? (
        <div className="kf-ModelCompare">
          <label>
            Compare{' '}
            <select
              className="kf-ModelCompare-metric"
              value={chosen}
              onChange={e => setMetric(e.target.value)}
              aria-label="Metric to compare"
            >
              {names.map(n => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
          </label>
          <ComparisonChart versions={versions} metric={chosen} />
        </div>
      ) : null}
      <div className="kf-ModelVersions-scroll">
        <table className="kf-ModelVersions">
          <thead>
            <tr>
              <th>v</th>
              <th>aliases</th>
              {names.map(n => (
                <th key={n} className="kf-num">
                  {n}
                </th>
              ))}
              {paramNames.map(n => (
                <th key={`p-${n}`} className="kf-ModelVersions-param" title={`param ${n}`}>
                  {n}
                </th>
              ))}
              <th>created</th>
              <th>from</th>
            </tr>
          </thead>
          <tbody>
            {versions.map(v => {
              const params = versionParams(v);
              return (
                <tr
                  key={v.id}
                  className={`kf-ModelVersion${v.state === 'ARCHIVED' ? ' kf-mod-archived' : ''}${
                    selected?.id === v.id ? ' jp-mod-selected' : ''
                  }`}
                  data-version={v.number ?? ''}
                  aria-selected={selected?.id === v.id}
                  onClick={() => setChosenVersion(v.id)}
                >
                  <td title={`${v.ref} · ${v.framework} · ${v.state}${v.description ? ` · ${v.description}` : ''}`}>
                    {v.number}
                  </td>
                  <td className="kf-ModelVersion-aliases">
                    {v.aliases.map(a => (
                      <span key={a} className="kf-AliasChip">
                        @{a}
                      </span>
                    ))}
                    {v.state === 'ARCHIVED' ? <span className="kf-ArchivedChip">archived</span> : null}
                  </td>
                  {names.map(n => (
                    <td key={n} className="kf-num">
                      {formatMetric(v.metrics[n])}
                    </td>
                  ))}
                  {paramNames.map(n => (
                    <td key={`p-${n}`} className="kf-ModelVersion-param">
                      {params[n] === undefined ? '–' : paramsLine({ [n]: params[n] }).slice(n.length + 1)}
                    </td>
                  ))}
                  <td className="kf-ModelVersion-created" title={v.created_at ?? ''}>
                    {formatStart(v.created_at)}
                  </td>
                  <td>
                    <Lineage version={v} actions={actions} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {next !== null ? (
        <Button className="kf-LoadMore" onClick={() => void more()}>
          Load more versions
        </Button>
      ) : null}
      {selected ? (
        <VersionCard
          key={selected.id}
          api={api}
          model={model.name}
          version={selected}
          actions={actions}
          act={act}
          onFiles={showFiles}
        />
      ) : null}
      {files ? (
        <div className="kf-ModelFiles" aria-label={`Files of version ${files.version}`}>
          <span>v{files.version} files:</span>
          {files.files.map(f => (
            <a
              href="#"
              key={f.path}
              className="kf-ModelFiles-file"
              onClick={e => {
                e.preventDefault();
                void download(files.version, f.path);
              }}
            >
              {f.path} <span className="kf-ModelFiles-size">{formatBytes(f.size)}</span>
            </a>
          ))}
        </div>
      ) : null}
      <form
        className="kf-AliasForm"
        onSubmit={e => {
          e.preventDefault();
          if (target !== null && aliasName.trim()) {
            void setAlias(aliasName.trim(), target);
          }
        }}
      >
        <input
          className="jp-mod-styled kf-AliasForm-name"
          aria-label="Alias"
          value={aliasName}
          onChange={e => setAliasName(e.target.value)}
        />
        <span>→</span>
        <select
          className="jp-mod-styled kf-AliasForm-version"
          aria-label="Version for the alias"
          value={target ?? ''}
          onChange={e => setAliasVersion(Number(e.target.value))}
        >
          {versions
            .filter(v => v.number !== null && v.state === 'LIVE')
            .map(v => (
              <option key={v.id} value={v.number as number}>
                v{v.number}
              </option>
            ))}
        </select>
        <button type="submit" className="jp-Button kf-Button kf-AliasForm-set">
          Set alias
        </button>
      </form>
      {history && history.history.length ? (
        <ol className="kf-AliasHistory" aria-label="Alias history">
          {[...history.history].reverse().map((h, i) => (
            <li key={i} title={h.reason ?? ''}>
              {describeAliasEvent(h)}
              <span className="kf-AliasHistory-meta">
                {h.who ? ` · ${h.who}` : ''}
                {h.at ? ` · ${new Date(h.at).toLocaleString()}` : ''}
              </span>
            </li>
          ))}
        </ol>
      ) : null}
    </section>
  );
}

export function ModelsPanel(props: {
  api: ModelsApi;
  actions: IModelActions;
  /** A model to show (a lineage link elsewhere): its name searched for and selected. */
  focus?: { name: string; seq: number };
  /** Bumped when the registry changed (a `model` push event, re-opening the section): read again. */
  tick?: number;
}): JSX.Element {
  const { api, actions } = props;
  const [text, setText] = React.useState('');
  const [framework, setFramework] = React.useState('');
  const [alias, setAlias] = React.useState('');
  const [metricText, setMetricText] = React.useState('');
  const [models, setModels] = React.useState<IRegisteredModel[]>([]);
  const [total, setTotal] = React.useState<number | null>(null);
  const [next, setNext] = React.useState<number | null>(null);
  const [selected, setSelected] = React.useState<string | null>(null);
  const [error, setError] = React.useState('');
  const [loaded, setLoaded] = React.useState(false);
  const [reload, setReload] = React.useState(0);

  React.useEffect(() => {
    if (props.focus) {
      setText(props.focus.name);
      setSelected(props.focus.name);
    }
  }, [props.focus?.seq]);

  const filter: IModelFilter = {
    q: text,
    framework,
    alias,
    metrics: parseMetricFilter(metricText)
  };
  const key = JSON.stringify(filter);

  React.useEffect(() => {
    const ctrl = new AbortController();
    // typing: one request when the user pauses, the previous one aborted
    const timer = setTimeout(() => {
      api
        .listModels(filter, 0, ctrl.signal)
        .then(page => {
          setModels(page.items);
          setTotal(page.total);
          setNext(page.next_offset);
          setError('');
          setLoaded(true);
        })
        .catch(e => {
          if ((e as Error).name !== 'AbortError') {
            setError(errorText(e));
          }
        });
    }, 200);
    return () => {
      clearTimeout(timer);
      ctrl.abort();
    };
  }, [key, reload, props.tick ?? 0]);

  const more = async () => {
    if (next === null) {
      return;
    }
    try {
      const page = await api.listModels(filter, next);
      setModels(m => appendPage(m, page, x => x.name));
      setNext(page.next_offset);
    } catch (e) {
      setError(errorText(e));
    }
  };
  const current = models.find(m => m.name === selected) ?? null;

  return (
    <div className="kf-ModelsPanel">
      <div className="kf-ModelsPanel-filters">
        <input
          className="jp-mod-styled kf-ModelsPanel-search"
          type="search"
          placeholder="Search models"
          aria-label="Search models"
          value={text}
          onChange={e => setText(e.target.value)}
        />
        <div className="kf-ModelsPanel-filterRow">
          <Button
            className="kf-ModelsPanel-refresh"
            title="Read the registry again"
            aria-label="Refresh models"
            onClick={() => setReload(r => r + 1)}
          >
            ⟳
          </Button>
          <select
            className="jp-mod-styled"
            aria-label="Framework"
            value={framework}
            onChange={e => setFramework(e.target.value)}
          >
            <option value="">any framework</option>
            {['sklearn', 'pytorch', 'onnx', 'xgboost', 'custom'].map(f => (
              <option key={f} value={f}>
                {f}
              </option>
            ))}
          </select>
          <input
            className="jp-mod-styled"
            placeholder="alias"
            aria-label="Alias filter"
            value={alias}
            onChange={e => setAlias(e.target.value)}
          />
          <input
            className="jp-mod-styled"
            placeholder="accuracy>=0.9"
            aria-label="Metric ranges"
            title="Metric ranges, comma separated: accuracy>=0.9, loss<=0.3, f1=0.5..0.8"
            value={metricText}
            onChange={e => setMetricText(e.target.value)}
          />
        </div>
      </div>
      {error ? (
        <div className="kf-TuningPanel-error kf-ModelPanel-error" role="alert">
          {error}
        </div>
      ) : null}
      {loaded && !models.length && !error ? (
        <div className="kf-TuningPanel-empty">
          No registered models{text || framework || alias || metricText ? ' match' : ' yet'}. Register one
          with <code>kfjupyter.register_model("name", model)</code>.
        </div>
      ) : null}
      <ul className="kf-JobList kf-ModelList" aria-label="Registered models" role="listbox">
        {models.map(m => (
          <li
            key={m.name}
            role="option"
            aria-selected={m.name === selected}
            className={`kf-ModelRow${m.name === selected ? ' jp-mod-selected' : ''}`}
            onClick={() => setSelected(m.name === selected ? null : m.name)}
            title={m.description ?? m.name}
          >
            <span className="kf-ModelRow-name">{m.name}</span>
            <span className="kf-ModelRow-meta">
              v{m.latest_version ?? '–'} · {m.frameworks.join(', ')}
              {m.state === 'ARCHIVED' ? ' · archived' : ''}
            </span>
            <span className="kf-ModelRow-aliases">
              {Object.entries(m.aliases).map(([a, v]) => (
                <span key={a} className="kf-AliasChip">
                  @{a}:v{v}
                </span>
              ))}
            </span>
          </li>
        ))}
      </ul>
      {next !== null ? (
        <Button className="kf-LoadMore" onClick={() => void more()}>
          Load more ({models.length} of {total ?? '?'})
        </Button>
      ) : null}
      {current ? (
        <ModelDetail
          key={current.name}
          api={api}
          model={current}
          actions={actions}
          onChanged={() => setReload(r => r + 1)}
          tick={(props.tick ?? 0) + reload}
        />
      ) : null}
    </div>
  );
}

/** The Models section of the sidebar. */
export class ModelsPanelWidget extends ReactWidget {
  constructor(private readonly _options: { api: ModelsApi; actions: IModelActions }) {
    super();
    this.id = 'kfjupyter-models';
    this.title.label = 'Models';
    this.title.caption = 'Registered models of the kfjupyter workspace';
    this.addClass('kf-ModelsPanelWidget');
  }

  /** Re-read the list and the open model (a registration from a kernel, the section opened again). */
  refresh(): void {
    this._tick += 1;
    this.update();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.refresh(); // opening the section again reads the registry again
  }

  /** Show one model: its name in the search box, its versions open. */
  focusModel(name: string): void {
    this._focus = { name, seq: (this._focus?.seq ?? 0) + 1 };
    this.update();
  }

  render(): JSX.Element {
    return (
      <ModelsPanel api={this._options.api} actions={this._options.actions} focus={this._focus} tick={this._tick} />
    );
  }

  private _focus: { name: string; seq: number } | undefined;
  private _tick = 0;
}
