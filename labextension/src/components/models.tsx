/**
 * The Models panel of the Kubeflow sidebar: search and filter registered models
 * (server-side, a page at a time with "Load more"), a model's versions with their
 * metrics side by side and a bar chart of a chosen metric, lineage links (job tab,
 * notebook), aliases (set/move, history), archive/restore, artifact download.
 * The Deploy button is hidden until the serving API is wired (`actions.deploy`).
 */

import * as React from 'react';

import { ReactWidget } from '@jupyterlab/ui-components';

import {
  appendPage,
  comparisonBars,
  describeAliasEvent,
  formatMetric,
  IAliasHistory,
  IArtifactFile,
  IModelFilter,
  IModelVersion,
  IRegisteredModel,
  metricNames,
  ModelsApi,
  parseMetricFilter
} from '../models';
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
  const height = 90;
  const { bars, min, max } = comparisonBars(props.versions, props.metric, width, height);
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
        <g key={b.label}>
          <rect className="kf-ModelChart-bar" x={b.x} y={b.y} width={b.width} height={b.height}>
            <title>{`${b.label}: ${formatMetric(b.value)}`}</title>
          </rect>
          <text className="kf-ModelChart-label" x={b.x + b.width / 2} y={height - 2} textAnchor="middle">
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

function ModelDetail(props: {
  api: ModelsApi;
  model: IRegisteredModel;
  actions: IModelActions;
  onChanged: () => void;
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
  }, [model.name, reload]);

  const names = metricNames(versions);
  const chosen = names.includes(metric) ? metric : names[0] ?? '';
  const target = aliasVersion ?? versions[0]?.number ?? null;

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

  return (
    <section className="kf-ModelDetail" aria-label={`Versions of ${model.name}`}>
      <header className="kf-ModelDetail-header">
        <span className="kf-ModelDetail-title">{model.name}</span>
        <span className="kf-ModelDetail-count">
          {versions.length}
          {total !== null && total > versions.length ? ` of ${total}` : ''} versions
        </span>
      </header>
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
              <th>from</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {versions.map(v => (
              <tr
                key={v.id}
                className={`kf-ModelVersion${v.state === 'ARCHIVED' ? ' kf-mod-archived' : ''}`}
                data-version={v.number ?? ''}
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
                <td>
                  <Lineage version={v} actions={actions} />
                </td>
                <td className="kf-ModelVersion-actions">
                  {v.number !== null ? (
                    <>
                      <Button
                        title={v.state === 'ARCHIVED' ? 'Restore this version' : 'Archive this version'}
                        onClick={() =>
                          void act(() => api.setState(model.name, v.number as number, v.state !== 'ARCHIVED'))
                        }
                      >
                        {v.state === 'ARCHIVED' ? 'Restore' : 'Archive'}
                      </Button>
                      <Button
                        title="The artifact's files, to download"
                        onClick={() =>
                          void api
                            .files(model.name, v.number as number)
                            .then(f => setFiles({ version: v.number as number, files: f.files }))
                            .catch(e => setError(errorText(e)))
                        }
                      >
                        Files
                      </Button>
                      {actions.deploy ? (
                        <Button
                          className="kf-ModelVersion-deploy"
                          onClick={() => void act(() => actions.deploy!(model.name, v.number as number))}
                        >
                          Deploy
                        </Button>
                      ) : null}
                    </>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {next !== null ? (
        <Button className="kf-LoadMore" onClick={() => void more()}>
          Load more versions
        </Button>
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
              {f.path}
            </a>
          ))}
        </div>
      ) : null}
      <form
        className="kf-AliasForm"
        onSubmit={e => {
          e.preventDefault();
          if (target !== null && aliasName.trim()) {
            void act(() => api.setAlias(model.name, aliasName.trim(), target));
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
  }, [key, reload]);

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

  /** Re-read the list (e.g. after a registration from a kernel). */
  refresh(): void {
    this.update();
  }

  /** Show one model: its name in the search box, its versions open. */
  focusModel(name: string): void {
    this._focus = { name, seq: (this._focus?.seq ?? 0) + 1 };
    this.update();
  }

  render(): JSX.Element {
    return <ModelsPanel api={this._options.api} actions={this._options.actions} focus={this._focus} />;
  }

  private _focus: { name: string; seq: number } | undefined;
}
