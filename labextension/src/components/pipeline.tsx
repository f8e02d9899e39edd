/**
 * The Pipeline panel, for the active notebook: the active code cell's step tags (written
 * into the cell's metadata through the notebook model, so Save puts them in the .ipynb),
 * a toolbar that stays in view (Compile / Run on a backend: local or Kubeflow Pipelines /
 * Export YAML), the DAG (laid out by dagre, pipelinelayout.ts) with a legend of every
 * status and edge, the notebook's run history (any run shown), and the shown run's steps
 * live (status as icon + words, duration, cached or not and why, logs, the values a step
 * handed on). Each notebook cell wears a badge: its step and that step's status. The panel holds no pipeline logic: the
 * server compiles (`POST /pipelines/compile`) and runs (`POST /pipelines/runs`). A step's
 * log is the run's channel `step/NAME`, streamed (`useChannelLog`), one open at a time.
 */

import type { ICellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal } from '@lumino/signaling';
import * as React from 'react';

import { IPipeline, IPipelineRun, IRunStep, IStepOutputs, PipelineApi, PipelineCompileError } from '../pipelineapi';
import { IDagLayout, layoutDag, orderOnly } from '../pipelinelayout';
import {
  backendLabel,
  cacheText,
  cellBadges,
  displayStatus,
  outputText,
  RUN_BACKENDS,
  STATUS_INFO,
  statusInfo,
  paramText,
  restPath,
  runActive,
  runMatchesPipeline,
  runParameters,
  sameNotebook,
  stepChannel,
  stepLogRead,
  stepSeconds,
  stepStates
} from '../pipelinerun';
import {
  CellRole,
  cellSteps,
  IStepTags,
  LIMIT_KEYS,
  parseTags,
  ROLE_LABELS,
  ROLE_TAGS,
  sameTags,
  serializeTags,
  stepNames,
  tagWarning,
  writeProblem
} from '../pipelinetags';
import { formatDuration, formatStart } from '../format';
import { IJob } from '../types';
import { useNow, usePageVisible, VisibilityAwareWidget } from './common';
import { useChannelLog } from './logs';

/** The most lines of a step's log the panel keeps (a running step's from its last RUNNING_LOG_TAIL). */
export const STEP_LOG_CAPACITY = 20000;

/** Milliseconds between two reads of an active run. */
export const POLL_MS = 1000;

const ROLES: CellRole[] = [
  'continue',
  'step',
  'skip',
  'imports',
  'functions',
  'pipeline-parameters',
  'pipeline-metrics',
  'notebook' // offered only on a cell that has a notebook: tag
];
const LIMIT_LABELS: Record<string, string> = { cpu: 'CPU', memory: 'Memory', 'nvidia.com/gpu': 'GPUs' };
const LIMIT_HINTS: Record<string, string> = { cpu: 'e.g. 2 or 500m', memory: 'e.g. 1Gi', 'nvidia.com/gpu': 'e.g. 1' };

/** Re-render whenever the tracker's notebook, its active cell, its cells or their metadata change. */
function useNotebook(tracker: INotebookTracker): NotebookPanel | null {
  const [, setTick] = React.useState(0);
  const panel = tracker.currentWidget;
  React.useEffect(() => {
    const bump = () => setTick(t => t + 1);
    tracker.currentChanged.connect(bump);
    tracker.activeCellChanged.connect(bump);
    bump(); // what changed between the first render and this subscription
    return () => {
      tracker.currentChanged.disconnect(bump);
      tracker.activeCellChanged.disconnect(bump);
    };
  }, [tracker]);
  const model = panel?.content.model ?? null;
  // Bumped when the cell list changes (a cell added, removed, moved or replaced at the same
  // count): the effect below then subscribes to the cells there are now.
  const [cellsVersion, setCellsVersion] = React.useState(0);
  React.useEffect(() => {
    if (!model) {
      return;
    }
    const bump = () => setTick(t => t + 1);
    const cellsChanged = () => setCellsVersion(v => v + 1);
    model.cells.changed.connect(cellsChanged);
    // No contentChanged: the panel reads tags and cells, not sources (no render per keystroke).
    const cellModels: ICellModel[] = [];
    for (const cell of model.cells) {
      cellModels.push(cell);
      cell.metadataChanged.connect(bump);
    }
    return () => {
      model.cells.changed.disconnect(cellsChanged);
      cellModels.forEach(cell => cell.metadataChanged.disconnect(bump));
    };
  }, [model, cellsVersion]);
  return panel;
}

/** Each cell's `tags` (null for a markdown/raw cell), in notebook order. */
function notebookTags(panel: NotebookPanel | null): (unknown | null)[] {
  const out: (unknown | null)[] = [];
  const model = panel?.content.model;
  if (!model) {
    return out;
  }
  for (const cell of model.cells) {
    out.push(cell.type === 'code' ? cell.getMetadata('tags') ?? [] : null);
  }
  return out;
}

/** Write `tags` into the cell's metadata (no write when nothing changes). */
function writeTags(cell: ICellModel, tags: unknown[]): void {
  const current = cell.getMetadata('tags');
  const before: unknown[] = Array.isArray(current) ? current : [];
  if (sameTags(before, tags)) {
    return;
  }
  if (tags.length) {
    cell.setMetadata('tags', tags);
  } else {
    cell.deleteMetadata('tags');
  }
}

/** Make cell `index` the notebook's active cell and bring it into view. */
export async function selectCell(panel: NotebookPanel, index: number, activate?: (id: string) => void): Promise<void> {
  const notebook = panel.content;
  if (index < 0 || index >= notebook.widgets.length) {
    return;
  }
  activate?.(panel.id);
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  await notebook.scrollToItem(index, 'center');
}

/* ---------------------------------------------------------------- tag editor */

function TagEditor(props: { panel: NotebookPanel }): JSX.Element {
  const notebook = props.panel.content;
  const cell = notebook.activeCell?.model ?? null;
  if (!cell || cell.type !== 'code') {
    return <div className="kf-PipelineTags kf-PipelineTags-empty">Select a code cell to edit its step tags.</div>;
  }
  return <CellTagForm key={cell.id} cell={cell} index={notebook.activeCellIndex} allTags={notebookTags(props.panel)} />;
}

function CellTagForm(props: { cell: ICellModel; index: number; allTags: (unknown | null)[] }): JSX.Element {
  const { cell, index, allTags } = props;
  const raw = cell.getMetadata('tags');
  const rawTags: unknown[] = Array.isArray(raw) ? raw : [];
  const stored = parseTags(raw);
  const storedKey = JSON.stringify(raw ?? []);
  const conflicts = stored.conflicts;
  const own = stored.role === 'step' ? stored.name : '';
  const others = stepNames(allTags).filter(n => n !== own);
  // what the form would write must be tags the compiler takes
  const problemOf = (t: IStepTags): string => writeProblem(t, cell.getMetadata('tags'));
  const [draft, setDraft] = React.useState<IStepTags>(stored);

  // The tags changed elsewhere (another view, undo): start over from the metadata, unless
  // the form holds an edit not written yet (a name being typed that is not valid yet).
  React.useEffect(() => {
    const stale = storedKey !== JSON.stringify(serializeTags(draft, raw)) && !problemOf(draft);
    if (stale || conflicts.length || draft.conflicts.length) {
      setDraft(stored);
    }
  }, [storedKey]);

  const problem = conflicts.length ? '' : problemOf(draft);
  const warning = problem ? '' : tagWarning(draft, others);
  const belongs = cellSteps(allTags)[index];

  const change = (patch: Partial<IStepTags>): void => {
    if (conflicts.length) {
      return; // the form does not resolve a conflict: the user edits the tags
    }
    const next = { ...draft, ...patch };
    setDraft(next);
    if (!problemOf(next)) {
      // edit the cell's tags as they are now: unchanged tags stay as the user wrote them
      writeTags(cell, serializeTags(next, cell.getMetadata('tags')));
    }
  };
  const setLimit = (key: string, value: string): void => {
    const limits = { ...draft.limits };
    if (value.trim()) {
      limits[key] = value.trim();
    } else {
      delete limits[key];
    }
    change({ limits });
  };
  const togglePrev = (name: string, on: boolean): void => {
    const prev = on ? [...draft.prev.filter(p => p !== name), name] : draft.prev.filter(p => p !== name);
    change({ prev });
  };
  const prevChoices = [...others, ...draft.prev.filter(p => !others.includes(p))];
  const roles = ROLES.filter(r => r !== 'notebook' || draft.role === 'notebook' || stored.role === 'notebook');
  const unread = draft.role === stored.role ? stored.unread : [];

  return (
    <div className="kf-PipelineTags" data-cell={index}>
      <div className="kf-PipelineTags-head">
        Cell {index + 1}
        {draft.role === 'continue' ? (
          <span className="kf-PipelineTags-belongs">{belongs ? ` · in step ${belongs}` : ' · in no step'}</span>
        ) : null}
      </div>
      {conflicts.length ? (
        <div className="kf-PipelineTags-conflict" aria-live="polite">
          <div>The cell's tags conflict; the form leaves them as they are:</div>
          <ul>
            {conflicts.map(c => (
              <li key={c}>{c}</li>
            ))}
          </ul>
          <div>Edit the cell's tags (Property Inspector → Cell metadata, or the cell's tag list) to fix them.</div>
        </div>
      ) : null}
      <fieldset className="kf-PipelineTags-fields" disabled={conflicts.length > 0}>
      <label className="kf-PipelineField">
        <span>Role</span>
        <select
          aria-label="Cell role"
          className="kf-PipelineTags-role"
          value={draft.role}
          onChange={e => change({ role: e.target.value as CellRole })}
        >
          {roles.map(r => (
            <option key={r} value={r}>
              {ROLE_LABELS[r]}
            </option>
          ))}
        </select>
      </label>
      {unread.length ? (
        <div className="kf-PipelineTags-note">
          {ROLE_TAGS.includes(draft.role) ? `Not read while "${draft.role}" decides the cell: ` : 'Not read ("step:" without a name): '}
          {unread.join(', ')}
        </div>
      ) : null}
      {draft.role === 'notebook' ? (
        <div className="kf-PipelineTags-note">
          Runs the steps of another notebook here (Kale's sub-pipeline), as steps <code>{draft.name}_STEP</code>;
          its path is the cell's <code>notebook_path</code> metadata.
        </div>
      ) : null}
      {draft.role === 'step' ? (
        <>
          <label className="kf-PipelineField">
            <span>Step name</span>
            <input
              aria-label="Step name"
              className="kf-PipelineTags-name"
              value={draft.name}
              placeholder="train"
              spellCheck={false}
              onChange={e => change({ name: e.target.value })}
            />
          </label>
          <fieldset className="kf-PipelineField kf-PipelineTags-prev">
            <legend>After (prev)</legend>
            {prevChoices.length === 0 ? <span className="kf-PipelineTags-none">No other steps yet.</span> : null}
            {prevChoices.map(name => (
              <label key={name} className="kf-PipelineTags-prevItem">
                <input
                  type="checkbox"
                  aria-label={`After ${name}`}
                  checked={draft.prev.includes(name)}
                  onChange={e => togglePrev(name, e.target.checked)}
                />
                {name}
                {others.includes(name) ? null : <span className="kf-PipelineTags-unknown"> (no such step)</span>}
              </label>
            ))}
          </fieldset>
          <label className="kf-PipelineField">
            <span>Image</span>
            <input
              aria-label="Step image"
              className="kf-PipelineTags-image"
              value={draft.image}
              placeholder="the notebook's default"
              spellCheck={false}
              onChange={e => change({ image: e.target.value })}
            />
          </label>
          <div className="kf-PipelineTags-limits">
            {LIMIT_KEYS.map(key => (
              <label key={key} className="kf-PipelineField">
                <span>{LIMIT_LABELS[key]}</span>
                <input
                  aria-label={`${LIMIT_LABELS[key]} limit`}
                  value={draft.limits[key] ?? ''}
                  placeholder={LIMIT_HINTS[key]}
                  spellCheck={false}
                  onChange={e => setLimit(key, e.target.value)}
                />
              </label>
            ))}
          </div>
          <EntryRows<[string, string]>
            legend="Annotations"
            noun="annotation"
            columns={[
              { label: 'key', placeholder: 'team.io/owner' },
              { label: 'value', placeholder: 'ana' }
            ]}
            rows={draft.annotations}
            blank={['', '']}
            onChange={annotations => change({ annotations })}
          />
          <EntryRows<[string, string]>
            legend="Labels"
            noun="label"
            columns={[
              { label: 'key', placeholder: 'team' },
              { label: 'value', placeholder: 'vision' }
            ]}
            rows={draft.labels}
            blank={['', '']}
            onChange={labels => change({ labels })}
          />
          <EntryRows<[string, string, string]>
            legend="Secrets (env vars)"
            noun="secret"
            columns={[
              { label: 'Secret', placeholder: 'db-creds' },
              { label: 'key', placeholder: 'password' },
              { label: 'env var', placeholder: 'DB_PASSWORD' }
            ]}
            rows={draft.secrets}
            blank={['', '', '']}
            onChange={secrets => change({ secrets })}
          />
          <label className="kf-PipelineField kf-PipelineField-check">
            <input
              type="checkbox"
              aria-label="Use the step cache"
              checked={draft.cache}
              onChange={e => change({ cache: e.target.checked })}
            />
            <span>Use the step cache</span>
          </label>
        </>
      ) : null}
      </fieldset>
      {problem ? (
        <div className="kf-PipelineTags-problem" aria-live="polite">
          {problem} The cell keeps its tags until this is fixed.
        </div>
      ) : null}
      {warning ? <div className="kf-PipelineTags-warning">{warning}</div> : null}
      <div className="kf-PipelineTags-list" title="The cell's tags (metadata)">
        {rawTags.map((t, i) => (
          <code key={i} className={`kf-PipelineTag${typeof t === 'string' ? '' : ' kf-mod-nonString'}`}>
            {typeof t === 'string' ? t : JSON.stringify(t)}
          </code>
        ))}
      </div>
    </div>
  );
}

/**
 * The rows of a step option that takes several values (annotations, labels, secrets): an
 * input per column, a remove button per row, and Add. A blank row writes nothing.
 */
function EntryRows<R extends string[]>(props: {
  legend: string;
  noun: string;
  columns: { label: string; placeholder: string }[];
  rows: R[];
  blank: R;
  onChange: (rows: R[]) => void;
}): JSX.Element {
  const { legend, noun, columns, rows, blank, onChange } = props;
  const edit = (i: number, j: number, value: string): void =>
    onChange(rows.map((row, k) => (k === i ? (row.map((v, l) => (l === j ? value : v)) as R) : row)));
  return (
    <fieldset className="kf-PipelineField kf-PipelineTags-entries">
      <legend>{legend}</legend>
      {rows.map((row, i) => (
        <div key={i} className="kf-PipelineTags-entry">
          {columns.map((c, j) => (
            <input
              key={j}
              aria-label={`${noun} ${i + 1} ${c.label}`}
              value={row[j]}
              placeholder={c.placeholder}
              spellCheck={false}
              onChange={e => edit(i, j, e.target.value)}
            />
          ))}
          <button
            type="button"
            className="kf-PipelineTags-remove"
            aria-label={`Remove ${noun} ${i + 1}`}
            title={`Remove this ${noun}`}
            onClick={() => onChange(rows.filter((_, k) => k !== i))}
          >
            ×
          </button>
        </div>
      ))}
      <button type="button" className="jp-mod-styled kf-PipelineTags-add" onClick={() => onChange([...rows, blank])}>
        Add {noun}
      </button>
    </fieldset>
  );
}

/* ---------------------------------------------------------------- the DAG */

/** A status as icon + words (never colour alone), coloured per status by pipeline.css. */
export function PipelineStatus(props: { status: string; className?: string }): JSX.Element {
  const info = statusInfo(props.status);
  return (
    <span
      className={`kf-PipelineStatus kf-status-${props.status.toLowerCase()}${props.className ? ` ${props.className}` : ''}`}
      data-status={props.status}
      title={`${props.status}: ${info.meaning}`}
    >
      <span className="kf-PipelineStatus-icon" aria-hidden="true">
        {info.icon}
      </span>
      <span className="kf-PipelineStatus-text">{props.status}</span>
    </span>
  );
}

/** Step boxes: room for the name and, below it, the status (icon + words). */
const NODE_W = 128;
const NODE_H = 38;

export function DagView(props: {
  pipeline: IPipeline;
  states: Record<string, string>;
  onStep?: (step: string) => void;
  selected?: string | null;
}): JSX.Element {
  const { pipeline, states, onStep, selected } = props;
  const steps = Object.keys(pipeline.steps);
  const layout: IDagLayout = React.useMemo(
    () => layoutDag(steps, pipeline.edges, { nodeWidth: NODE_W, nodeHeight: NODE_H, layerGap: 26, gap: 14 }),
    [pipeline]
  );
  const dashed = layout.edges.some(orderOnly);
  const solid = layout.edges.some(e => !orderOnly(e));
  return (
    <>
      <svg
        className="kf-PipelineDag"
        role="group"
        aria-label={`Pipeline ${pipeline.name}: ${steps.length} steps`}
        viewBox={`0 0 ${layout.width} ${layout.height}`}
        width={layout.width}
        style={{ maxWidth: '100%' }}
      >
        <defs>
          <marker id="kf-dag-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0,0 L8,4 L0,8 z" className="kf-PipelineDag-arrow" />
          </marker>
        </defs>
        {layout.edges.map(e => (
          <g
            key={`${e.source}->${e.target}`}
            className={`kf-PipelineDag-edge${e.explicit ? ' kf-mod-explicit' : ''}${orderOnly(e) ? ' kf-mod-orderOnly' : ''}`}
            data-source={e.source}
            data-target={e.target}
            aria-hidden="true"
          >
            <title>
              {e.source} → {e.target}
              {e.names.length ? `: passes ${e.names.join(', ')}` : ''}
              {e.explicit ? ' (prev)' : ''}
            </title>
            <path d={e.d} markerEnd="url(#kf-dag-arrow)" />
            {e.label ? (
              <text x={e.labelX} y={e.labelY} textAnchor="middle" dominantBaseline="central" className="kf-PipelineDag-label">
                {e.label}
              </text>
            ) : null}
          </g>
        ))}
        {layout.nodes.map(n => {
          const state = states[n.name] ?? '';
          const info = state ? statusInfo(state) : null;
          const after = layout.edges.filter(e => e.target === n.name).map(e => e.source);
          const label = `Step ${n.name}${state ? `, ${state}` : ''}${after.length ? `, after ${after.join(', ')}` : ''}: go to its cell`;
          return (
            <g
              key={n.name}
              className={`kf-PipelineDag-node${state ? ` kf-status-${state.toLowerCase()}` : ''}${selected === n.name ? ' kf-mod-selected' : ''}`}
              data-step={n.name}
              data-status={state}
              transform={`translate(${n.x},${n.y})`}
              role="button"
              tabIndex={0}
              aria-label={label}
              onClick={() => onStep?.(n.name)}
              onKeyDown={e => {
                if (e.key === 'Enter' || e.key === ' ') {
                  e.preventDefault();
                  onStep?.(n.name);
                }
              }}
            >
              <title>
                {n.name}
                {info ? ` — ${state}: ${info.meaning}` : ''}
              </title>
              <rect width={n.width} height={n.height} rx={5} />
              <text x={n.width / 2} y={state ? 13 : n.height / 2} dominantBaseline="central" textAnchor="middle" className="kf-PipelineDag-name">
                {n.name.length > 17 ? `${n.name.slice(0, 16)}…` : n.name}
              </text>
              {info ? (
                <text x={n.width / 2} y={28} dominantBaseline="central" textAnchor="middle" className="kf-PipelineDag-status">
                  {`${info.icon} ${state}`}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
      <details className="kf-PipelineDag-legend">
        <summary className="kf-PipelineDag-legendSummary">Legend: what the statuses and arrows mean</summary>
        <div className="kf-PipelineDag-legendBody" role="note" aria-label="Legend">
        {STATUS_INFO.filter(s => s.status !== 'Cancelling').map(s => (
          <span key={s.status} className="kf-PipelineDag-legendItem" data-legend={s.status} title={s.meaning}>
            <PipelineStatus status={s.status} />
            <span className="kf-PipelineDag-legendMeaning">{s.meaning}</span>
          </span>
        ))}
        {solid || !layout.edges.length ? (
          <span className="kf-PipelineDag-legendItem" data-legend="data">
            <svg width="24" height="8" aria-hidden="true">
              <line x1="0" y1="4" x2="24" y2="4" className="kf-PipelineDag-legendLine" />
            </svg>
            <span className="kf-PipelineDag-legendMeaning">
              data passed: the arrow's label names the variables the next step reads
            </span>
          </span>
        ) : null}
        {dashed ? (
          <span className="kf-PipelineDag-legendItem" data-legend="order">
            <svg width="24" height="8" aria-hidden="true">
              <line x1="0" y1="4" x2="24" y2="4" className="kf-PipelineDag-legendLine kf-mod-orderOnly" />
            </svg>
            <span className="kf-PipelineDag-legendMeaning">order only (prev:): runs after, passes nothing</span>
          </span>
        ) : null}
        </div>
      </details>
    </>
  );
}

/* ---------------------------------------------------------------- a run */

function StepRow(props: {
  run: IPipelineRun;
  step: IRunStep;
  api: PipelineApi;
  now: number;
  visible: boolean;
  /** The step's log is open (one at a time in the panel: one live stream). */
  open: boolean;
  onToggle: () => void;
  /** The step is selected (its handed-on values shown). */
  selected: boolean;
  onSelect: () => void;
}): JSX.Element {
  const { run, step, api, now, visible, open, onToggle, selected, onSelect } = props;
  const status = displayStatus(step);
  const cache = cacheText(step);
  // The log (the run's channel step/NAME) while it is open and the panel shown: a running
  // step's tail, followed; another step's whole log, read once (again when its status changes).
  const read = stepLogRead(step);
  const { buffer: log, state, error } = useChannelLog(api.api, run.id, {
    channel: open ? stepChannel(step) : null,
    tail: read.tail,
    follow: read.follow,
    active: visible,
    capacity: STEP_LOG_CAPACITY,
    restart: step.status
  });
  const loading = (state === 'idle' || state === 'connecting') && !log.length;
  const text = loading
    ? 'Loading…'
    : [
        log.dropped ? `(${log.dropped} earlier lines not kept)` : '',
        log.length ? log.text() : error ? '' : '(no output)',
        // A failed read says so after what was read; the next good read clears it.
        error ? `(${error})` : ''
      ]
        .filter(Boolean)
        .join('\n');
  // The log follows its end (new lines in view) unless the user scrolled up to read.
  const logRef = React.useRef<HTMLPreElement>(null);
  const atEnd = React.useRef(true);
  const onLogScroll = (): void => {
    const pre = logRef.current;
    if (pre) {
      atEnd.current = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    }
  };
  React.useLayoutEffect(() => {
    const pre = logRef.current;
    if (pre && atEnd.current) {
      pre.scrollTop = pre.scrollHeight;
    }
  }, [text, open]);
  return (
    <li
      className={`kf-PipelineStep kf-status-${status.toLowerCase()}${selected ? ' kf-mod-selected' : ''}`}
      data-step={step.name}
      data-status={status}
    >
      <div className="kf-PipelineStep-row">
        <span className="kf-PipelineStep-name" title={step.name}>
          {step.name}
        </span>
        <PipelineStatus status={status} className="kf-PipelineStep-status" />
      </div>
      <div className="kf-PipelineStep-meta">
        <span className="kf-PipelineStep-duration" title="Duration">
          {formatDuration(stepSeconds(step, now))}
        </span>
        <span className="kf-PipelineStep-cache" data-cached={step.cached ? 'true' : 'false'} title={cache.reason}>
          {cache.reason || cache.label}
        </span>
        <button
          className="kf-PipelineStep-valuesButton"
          onClick={onSelect}
          aria-expanded={selected}
          aria-label={`${selected ? 'Hide the values' : 'Values'} step ${step.name} handed on`}
          title="The values this step handed on to the next steps"
        >
          {selected ? 'Hide values' : 'Values'}
        </button>
        <button
          className="kf-PipelineStep-logsButton"
          onClick={onToggle}
          aria-expanded={open}
          aria-label={`${open ? 'Hide the log' : 'Log'} of step ${step.name}`}
        >
          {open ? 'Hide log' : 'Log'}
        </button>
      </div>
      {step.error ? <pre className="kf-PipelineStep-error">{step.error}</pre> : null}
      {selected ? <StepOutputsView api={api} run={run} step={step} /> : null}
      {open ? (
        <pre className="kf-PipelineStep-logs" ref={logRef} onScroll={onLogScroll} data-stream={state}>
          {text}
        </pre>
      ) : null}
    </li>
  );
}

/** The values a step handed on: name, type, size, a short preview, the steps that read it. */
function StepOutputsView(props: { api: PipelineApi; run: IPipelineRun; step: IRunStep }): JSX.Element {
  const { api, run, step } = props;
  const [answer, setAnswer] = React.useState<IStepOutputs | null>(null);
  const [error, setError] = React.useState('');
  React.useEffect(() => {
    const abort = new AbortController();
    setError('');
    api
      .stepOutputs(run.id, step.name, abort.signal)
      .then(a => setAnswer(a))
      .catch(e => {
        if ((e as Error).name !== 'AbortError') {
          setError((e as Error).message);
        }
      });
    return () => abort.abort();
  }, [run.id, step.name, step.status]);
  let body: JSX.Element;
  if (error) {
    body = <div className="kf-PipelineValues-note">Cannot read the values: {error}</div>;
  } else if (!answer) {
    body = <div className="kf-PipelineValues-note">Loading…</div>;
  } else if (!answer.outputs.length) {
    body = <div className="kf-PipelineValues-note">This step hands nothing on (no later step reads its variables).</div>;
  } else {
    body = (
      <table className="kf-PipelineValues-table">
        <tbody>
          {answer.outputs.map(o => (
            <tr key={o.name} data-name={o.name} data-available={o.available ? 'true' : 'false'}>
              <th scope="row">
                <code>{o.name}</code>
              </th>
              <td>
                <div className="kf-PipelineValues-type">{outputText(o)}</div>
                {o.preview ? <code className="kf-PipelineValues-preview">{o.preview}</code> : null}
                {o.to.length ? <div className="kf-PipelineValues-to">→ {o.to.join(', ')}</div> : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    );
  }
  return (
    <div className="kf-PipelineValues" data-step={step.name} aria-label={`Values step ${step.name} handed on`}>
      {answer && answer.backend !== 'local' ? (
        <div className="kf-PipelineValues-note">
          The values of a {backendLabel(answer.backend)} run stay in its artifact store; listed here are their names.
        </div>
      ) : null}
      {body}
    </div>
  );
}

function RunView(props: {
  run: IPipelineRun;
  api: PipelineApi;
  onCancel: () => void;
  visible: boolean;
  selected: string | null;
  onSelect: (step: string | null) => void;
}): JSX.Element {
  const { run, api, onCancel, visible, selected, onSelect } = props;
  const active = runActive(run);
  const now = useNow(active && visible);
  const metrics = Object.entries(run.metrics || {});
  // One step's log open at a time: the panel holds one log stream.
  const [openStep, setOpenStep] = React.useState<string | null>(null);
  return (
    <div className="kf-PipelineRun" data-run={run.id} data-status={run.status}>
      <div className="kf-PipelineRun-head">
        <span className="kf-PipelineRun-id" title={`${run.id} on ${backendLabel(run.backend)}`}>
          Run {run.id}
        </span>
        <span className="kf-PipelineRun-backend">{backendLabel(run.backend)}</span>
        <PipelineStatus status={run.status} className="kf-PipelineRun-status" />
        {active ? (
          <button className="jp-mod-styled jp-mod-warn kf-PipelineRun-cancel" onClick={onCancel}>
            Cancel
          </button>
        ) : null}
      </div>
      {run.error ? <pre className="kf-PipelineRun-error">{run.error}</pre> : null}
      <ul className="kf-PipelineSteps">
        {(run.steps || []).map(step => (
          <StepRow
            key={step.name}
            run={run}
            step={step}
            api={api}
            now={now}
            visible={visible}
            open={openStep === step.name}
            onToggle={() => setOpenStep(open => (open === step.name ? null : step.name))}
            selected={selected === step.name}
            onSelect={() => onSelect(selected === step.name ? null : step.name)}
          />
        ))}
      </ul>
      {metrics.length ? (
        <table className="kf-PipelineMetrics">
          <tbody>
            {metrics.map(([k, v]) => (
              <tr key={k}>
                <th>{k}</th>
                <td>{typeof v === 'number' ? String(Math.round(v * 1e6) / 1e6) : JSON.stringify(v)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}

/* ---------------------------------------------------------------- the panel */

interface IPanelState {
  path: string;
  pipeline: IPipeline | null;
  error: { message: string; cell: number | null } | null;
  notice: string | null;
  run: IPipelineRun | null;
  busy: '' | 'compile' | 'run' | 'export';
  /** Parameter values typed for the next run (text; the server parses them by type). */
  params: Record<string, string>;
  /** The notebook's runs, newest first (null: not read yet). */
  runs: IPipelineRun[] | null;
  /** Where Run runs the pipeline: `local` or `kubernetes` (Kubeflow Pipelines). */
  backend: string;
  /** The step whose handed-on values are shown. */
  selected: string | null;
  /** The user chose an older run from the history: a newer run does not replace it. */
  pinned: boolean;
}

function initial(path: string): IPanelState {
  return { path, pipeline: null, error: null, notice: null, run: null, busy: '', params: {}, runs: null, backend: 'local', selected: null, pinned: false };
}

/** Whether the notebook has no steps at all (no step: tag, no notebook: sub-pipeline cell). */
function hasNoSteps(allTags: ReadonlyArray<unknown | null>): boolean {
  return !stepNames(allTags).length && !allTags.some(t => t !== null && parseTags(t).role === 'notebook');
}

/** A compile error that only says the notebook has no steps (the empty state says it better). */
function isNoStepsError(message: string): boolean {
  return /has no pipeline tags|has no steps/.test(message);
}

/**
 * The badge of each cell of the notebook: `data-kf-step` / `data-kf-step-status` on the
 * cell's node, and on its input area a `data-kf-step-label` that pipeline.css draws.
 */
function paintCellBadges(panel: NotebookPanel, steps: (string | null)[], states: Record<string, string>): void {
  const badges = cellBadges(steps, states);
  panel.content.widgets.forEach((cell, i) => {
    const badge = badges[i] ?? null;
    const input = cell.inputArea?.node ?? null;
    const set = (node: HTMLElement | null, name: string, value: string | null) => {
      if (!node) {
        return;
      }
      if (value === null) {
        node.removeAttribute(name);
      } else if (node.getAttribute(name) !== value) {
        node.setAttribute(name, value);
      }
    };
    set(cell.node, 'data-kf-step', badge ? badge.step : null);
    set(cell.node, 'data-kf-step-status', badge ? badge.status : null);
    set(input, 'data-kf-step-label', badge ? badge.label : null);
    set(input, 'data-kf-step-status', badge ? badge.status : null);
  });
}

export function PipelinePanel(props: {
  tracker: INotebookTracker;
  api: PipelineApi;
  activate?: (id: string) => void;
  /** Job events (the sidebar's push channel): a pipeline job that changes is re-read at once. */
  jobChanged?: ISignal<unknown, IJob>;
  /** The section is shown (not folded, the sidebar open): polls only then. */
  visible?: boolean;
}): JSX.Element {
  const { tracker, api, activate, jobChanged } = props;
  const pageVisible = usePageVisible();
  const visible = (props.visible ?? true) && pageVisible;
  const panel = useNotebook(tracker);
  // The path the REST API wants: under jupyter-collaboration the context's path carries a
  // drive prefix (RTC:sub/nb.ipynb); its localPath does not.
  const path = panel ? restPath(panel.context.path, (panel.context as { localPath?: string }).localPath) : '';
  // One state per notebook: switching notebooks and back keeps each one's pipeline, run,
  // typed parameters and the action in progress (so a Run cannot be started twice).
  const [byPath, setStates] = React.useState<Record<string, IPanelState>>({});
  const current = byPath[path] ?? initial(path);
  const update = (patch: Partial<IPanelState>, forPath = path): void =>
    setStates(all => ({ ...all, [forPath]: { ...(all[forPath] ?? initial(forPath)), ...patch } }));
  /** The actions in progress, by notebook (set before the first await: a double click starts one). */
  const inFlight = React.useRef(new Set<string>());

  // Reads of a notebook's run race (the poll, an event, an action): a response is shown
  // only when no read of that notebook started after it has been shown already.
  const seqs = React.useRef(new Map<string, { started: number; shown: number }>());
  const readRun = async <T,>(read: () => Promise<T>, forPath = path): Promise<T | null> => {
    let seq = seqs.current.get(forPath);
    if (!seq) {
      seq = { started: 0, shown: 0 };
      seqs.current.set(forPath, seq);
    }
    const mine = ++seq.started;
    const out = await read();
    if (mine < seq.shown) {
      return null; // older than what is shown
    }
    seq.shown = mine;
    return out;
  };
  /** Nothing read before now is shown any more (a run just started replaces it). */
  const supersede = (forPath: string): void => {
    const seq = seqs.current.get(forPath);
    if (seq) {
      seq.started += 1;
      seq.shown = seq.started;
    }
  };

  /** Read the notebook's run history again (after a run started or ended). */
  const refreshHistory = (forPath: string): void => {
    api
      .list(forPath)
      .then(out => update({ runs: out.runs }, forPath))
      .catch(() => undefined);
  };

  // A notebook shown (first time, or again): its latest run, when newer than the one kept.
  React.useEffect(() => {
    if (!path) {
      return;
    }
    let live = true;
    readRun(() => api.list(path), path)
      .then(out => {
        const newest = out?.runs[0];
        if (live && out) {
          setStates(all => {
            const s = { ...(all[path] ?? initial(path)), runs: out.runs };
            if (!newest || (s.run && s.run.id !== newest.id && s.run.created_at >= newest.created_at)) {
              return { ...all, [path]: s };
            }
            return { ...all, [path]: { ...s, run: newest } };
          });
        }
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [path]);

  // An active run: read it again every POLL_MS until it ends.
  const run = current.run;
  const runId = run?.id ?? '';
  const active = runActive(run);

  // A pipeline job changed (this run, or one of this notebook started elsewhere: a magic,
  // the CLI): re-read it, or the notebook's newest run, now rather than at the next poll.
  // Other notebooks' runs are not this panel's business.
  React.useEffect(() => {
    if (!jobChanged || !path) {
      return;
    }
    let live = true;
    const onJob = (_: unknown, job: IJob): void => {
      if (job.kind !== 'pipeline') {
        return;
      }
      let read: () => Promise<IPipelineRun[]>;
      if (job.id === runId) {
        read = () => api.get(runId).then(fresh => [fresh]);
      } else if (sameNotebook(job.notebook, path)) {
        read = () => api.list(path).then(out => out.runs);
      } else {
        return;
      }
      const listed = job.id !== runId;
      if (!listed) {
        refreshHistory(path);
      }
      readRun(read)
        .then(runs => {
          const newest = runs?.[0];
          if (!live || !runs) {
            return;
          }
          setStates(all => {
            const s = all[path] ?? initial(path);
            const next: IPanelState = listed ? { ...s, runs } : s;
            // the run shown, read again; or a newer run (started elsewhere), unless the
            // user chose an older run from the history to look at
            if (newest && (newest.id === runId || !runId || (listed && !s.pinned && newest.created_at > (run?.created_at ?? '')))) {
              return { ...all, [path]: { ...next, run: newest, ...(newest.id === runId ? { notice: null } : {}) } };
            }
            return { ...all, [path]: next };
          });
        })
        .catch(() => undefined);
    };
    jobChanged.connect(onJob);
    return () => {
      live = false;
      jobChanged.disconnect(onJob);
    };
  }, [jobChanged, path, runId, run?.created_at]);
  React.useEffect(() => {
    if (path && runId) {
      refreshHistory(path);
    }
  }, [runId, run?.status]);
  React.useEffect(() => {
    if (!runId || !active || !visible) {
      return; // nothing to follow, or nobody to show it to (folded, hidden): no poll
    }
    let live = true;
    let timer = 0;
    const abort = new AbortController();
    const tick = async (): Promise<void> => {
      try {
        const fresh = await readRun(() => api.get(runId, abort.signal));
        if (live && fresh) {
          update({ run: fresh, notice: null }, path);
        }
      } catch (e) {
        if (live && (e as Error).name !== 'AbortError') {
          update({ notice: `Cannot read the run: ${(e as Error).message}` }, path);
        }
      }
      if (live) {
        timer = window.setTimeout(() => void tick(), POLL_MS);
      }
    };
    // Shown again after a pause: read now; otherwise after one interval.
    timer = window.setTimeout(() => void tick(), POLL_MS);
    return () => {
      live = false;
      abort.abort();
      window.clearTimeout(timer);
    };
  }, [runId, active, path, visible]);

  const pipeline = current.pipeline ?? run?.pipeline ?? null;
  const states = run && runMatchesPipeline(run, pipeline) ? stepStates(run) : {};
  const allTags = notebookTags(panel);
  const badgeSteps = cellSteps(allTags);
  // Every render: cheap (attributes written only when they change), and a cell added or
  // re-rendered gets its badge back.
  React.useEffect(() => {
    if (panel) {
      paintCellBadges(panel, badgeSteps, states);
    }
  });

  if (!panel) {
    return (
      <div className="kf-PipelinePanel">
        <div className="kf-Pipeline-empty">Open a notebook to build its pipeline from tagged cells.</div>
      </div>
    );
  }

  const saveFirst = async (): Promise<void> => {
    if (panel.context.model.dirty) {
      await panel.context.save();
    }
  };
  const compile = async (): Promise<void> => {
    update({ busy: 'compile', error: null, notice: null });
    try {
      await saveFirst();
      const pipeline = await api.compile(path);
      update({ pipeline, busy: '' });
    } catch (e) {
      const cell = e instanceof PipelineCompileError ? e.cell : null;
      update({ busy: '', pipeline: null, error: { message: (e as Error).message, cell } });
    }
  };
  const start = async (): Promise<void> => {
    const forPath = path;
    if (inFlight.current.has(forPath)) {
      return;
    }
    inFlight.current.add(forPath);
    update({ busy: 'run', error: null, notice: null }, forPath);
    try {
      await saveFirst();
      const known = current.pipeline ?? current.run?.pipeline ?? null;
      const fresh = await api.run(forPath, runParameters(known, current.params), current.backend);
      supersede(forPath); // reads started before the run are older
      update({ run: fresh, pipeline: fresh.pipeline ?? current.pipeline, busy: '', selected: null, pinned: false }, forPath);
      refreshHistory(forPath);
    } catch (e) {
      const cell = e instanceof PipelineCompileError ? e.cell : null;
      const where = current.backend === 'kubernetes' && !(e instanceof PipelineCompileError) ? 'Cannot run on Kubeflow Pipelines: ' : '';
      update({ busy: '', error: { message: `${where}${(e as Error).message}`, cell } }, forPath);
    } finally {
      inFlight.current.delete(forPath);
    }
  };
  const exportYaml = async (): Promise<void> => {
    update({ busy: 'export', error: null, notice: null });
    try {
      await saveFirst();
      const text = await api.exportYaml(path);
      const name = (path.split('/').pop() || 'pipeline').replace(/\.ipynb$/, '') + '.yaml';
      const url = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10000);
      update({ busy: '', notice: `Exported the KFP pipeline as ${name}.` });
    } catch (e) {
      update({ busy: '', notice: null, error: { message: (e as Error).message, cell: null } });
    }
  };
  const cancel = async (): Promise<void> => {
    if (!run) {
      return;
    }
    try {
      const fresh = await readRun(() => api.cancel(run.id));
      if (fresh) {
        update({ run: fresh, notice: null });
      }
    } catch (e) {
      update({ notice: `Cannot cancel: ${(e as Error).message}` });
    }
  };
  const showStep = (step: string): void => {
    const cells = (current.pipeline ?? run?.pipeline)?.steps[step]?.cells;
    if (run && states[step]) {
      update({ selected: step }); // its values shown in the run's steps
    }
    if (cells && cells.length) {
      void selectCell(panel, cells[0], activate);
    }
  };

  // The graph: the pipeline compiled now, else the last run's (said so). The run's colours
  // only on a graph the run ran (same steps, same programs).
  const fromRun = !current.pipeline && !!run?.pipeline;
  // The Parameters box: the compiled pipeline's, else the last run's (before any Compile).
  const paramPipeline = current.pipeline ?? run?.pipeline ?? null;
  const busy = current.busy;
  const noSteps = hasNoSteps(allTags);
  const error = current.error && !(noSteps && isNoStepsError(current.error.message)) ? current.error : null;
  const runs = current.runs ?? [];
  const saves = panel.context.model.dirty ? ' (saves the notebook first)' : ' (saves the notebook first if it has changes)';
  return (
    <div className="kf-PipelinePanel" data-notebook={path}>
      <div className="kf-Pipeline-toolbar">
      <div className="kf-Pipeline-notebook" title={path}>
        {path.split('/').pop()}
      </div>
      <div className="kf-Pipeline-actions">
        <button
          className="jp-mod-styled kf-Pipeline-compile"
          disabled={!!busy}
          title={`Compile the notebook's tagged cells into a pipeline${saves}`}
          onClick={() => void compile()}
        >
          {busy === 'compile' ? 'Compiling…' : 'Compile'}
        </button>
        <button
          className="jp-mod-styled jp-mod-accept kf-Pipeline-run"
          disabled={!!busy || active}
          title={`Run the pipeline${saves}`}
          onClick={() => void start()}
        >
          {busy === 'run' ? 'Starting…' : 'Run'}
        </button>
        <button
          className="jp-mod-styled kf-Pipeline-export"
          disabled={!!busy}
          title={`Download the Kubeflow Pipelines YAML${saves}`}
          onClick={() => void exportYaml()}
        >
          {busy === 'export' ? 'Exporting…' : 'Export YAML'}
        </button>
        <label className="kf-Pipeline-backend" title="Where Run runs the pipeline">
          <span>on</span>
          <select
            aria-label="Run on"
            className="kf-Pipeline-backendSelect"
            value={current.backend}
            disabled={!!busy}
            onChange={e => update({ backend: e.target.value, error: null })}
          >
            {RUN_BACKENDS.map(b => (
              <option key={b.value} value={b.value}>
                {b.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      </div>
      {noSteps ? (
        <div className="kf-Pipeline-noSteps" role="status">
          <strong>No steps yet:</strong> tag a cell with <code>step:NAME</code> (or use the cell toolbar's tags, or the form
          below: select a code cell, Role → Step) to make it a pipeline step; the untagged cells below it join that step.
        </div>
      ) : null}
      {error ? (
        <div className="kf-Pipeline-error" role="alert" data-cell={error.cell ?? ''}>
          <span className="kf-Pipeline-errorText">{error.message}</span>
          {error.cell !== null ? (
            <button className="jp-mod-styled kf-Pipeline-errorCell" onClick={() => void selectCell(panel, error.cell!, activate)}>
              Go to cell {error.cell + 1}
            </button>
          ) : null}
        </div>
      ) : null}
      {current.notice ? <div className="kf-Pipeline-notice">{current.notice}</div> : null}
      {paramPipeline && Object.keys(paramPipeline.parameters || {}).length ? (
        <fieldset className="kf-PipelineParams">
          <legend>Parameters of the next run</legend>
          {current.pipeline ? null : (
            <div className="kf-PipelineParams-origin">As in the last run's pipeline; Compile to read the notebook's.</div>
          )}
          {Object.values(paramPipeline.parameters).map(p => (
            <label key={p.name} className="kf-PipelineField">
              <span title={p.type}>{p.name}</span>
              <input
                aria-label={`Parameter ${p.name}`}
                value={current.params[p.name] ?? paramText(p.default, p.type)}
                spellCheck={false}
                onChange={e => update({ params: { ...current.params, [p.name]: e.target.value } })}
              />
            </label>
          ))}
        </fieldset>
      ) : null}
      <TagEditor panel={panel} />
      {pipeline ? (
        <div className={`kf-Pipeline-graph${fromRun ? ' kf-mod-lastRun' : ''}`} data-source={fromRun ? 'run' : 'compile'}>
          <div className="kf-Pipeline-graphHead">
            {fromRun ? (
              <span className="kf-Pipeline-graphOrigin">
                {error ? "Last run's pipeline (not the notebook as it is now) · " : "Last run's pipeline · "}
              </span>
            ) : null}
            {pipeline.name} · {Object.keys(pipeline.steps).length} steps
            {Object.keys(pipeline.parameters || {}).length
              ? ` · parameters ${Object.keys(pipeline.parameters).join(', ')}`
              : ''}
            {!fromRun && run && !runMatchesPipeline(run, pipeline) ? ' · changed since the last run' : ''}
          </div>
          <DagView pipeline={pipeline} states={states} onStep={showStep} selected={current.selected} />
        </div>
      ) : null}
      {runs.length ? (
        <details className="kf-PipelineHistory" open>
          <summary>
            Runs of this notebook <span className="kf-PipelineHistory-count">({runs.length})</span>
          </summary>
          <ul className="kf-PipelineHistory-list">
            {runs.map(r => {
              const shown = r.id === run?.id ? run : r;
              return (
                <li key={r.id}>
                  <button
                    className={`kf-PipelineHistory-item${r.id === run?.id ? ' kf-mod-current' : ''}`}
                    data-run={r.id}
                    aria-pressed={r.id === run?.id}
                    title={`Show run ${r.id}`}
                    onClick={() => update({ run: shown, selected: null, pinned: r.id !== runs[0]?.id })}
                  >
                    <PipelineStatus status={shown.status} />
                    <span className="kf-PipelineHistory-time">{formatStart(r.created_at)}</span>
                    <span className="kf-PipelineHistory-backend">{backendLabel(r.backend)}</span>
                    <span className="kf-PipelineHistory-id">{r.id}</span>
                  </button>
                </li>
              );
            })}
          </ul>
        </details>
      ) : null}
      {run ? (
        <RunView
          run={run}
          api={api}
          onCancel={() => void cancel()}
          visible={visible}
          selected={current.selected}
          onSelect={step => update({ selected: step })}
        />
      ) : null}
    </div>
  );
}

/** The run is polled only while the panel is shown. */
export class PipelinePanelWidget extends VisibilityAwareWidget {
  constructor(
    private readonly _tracker: INotebookTracker,
    private readonly _api: PipelineApi,
    private readonly _activate?: (id: string) => void,
    private readonly _jobChanged?: ISignal<unknown, IJob>
  ) {
    super();
    this.id = 'kfjupyter-pipeline';
    this.title.label = 'Pipeline';
    this.title.caption = "The active notebook's pipeline: step tags, DAG, runs";
    this.addClass('kf-PipelinePanelWidget');
  }

  render(): JSX.Element {
    return (
      <PipelinePanel
        tracker={this._tracker}
        api={this._api}
        activate={this._activate}
        jobChanged={this._jobChanged}
        visible={this.isVisible}
      />
    );
  }
}
