/**
 * Logs, streamed live (`GET /jobs/{id}/logs/stream?channel=…`): `useChannelLog` (one
 * channel of a job or of one of its child tasks, through one `LogFollower`), the channel
 * tabs, and a job's log viewer (one tab per channel of `job.channels.logs`).
 *
 * One stream per view: switching channel, hiding the view or closing it aborts it. Lines
 * go into a bounded `LogBuffer`; the view redraws at most once per frame.
 */

import * as React from 'react';

import { KFApi } from '../api';
import { FollowState, LogBuffer } from '../logbuffer';
import { LogFollower, LogFollowerState, logChannels, pickChannel } from '../logfollower';
import { IChannel, IJob, isTerminal } from '../types';
import { Button } from './common';

export const LOG_TAIL = 1000;
export const LOG_CAPACITY = 5000;

/** A follower's state, or `idle` (no channel to read) and `paused` (not shown). */
export type ChannelLogState = LogFollowerState | 'idle' | 'paused';

export interface IChannelLogOptions {
  /** The channel to read (null: none; the lines held are dropped). */
  channel: string | null;
  /** The last lines read first (0: the whole log). */
  tail: number;
  /** Follow the channel until it ends, or read it once (the tail, then `end`). */
  follow: boolean;
  /** Stream only while true: the lines shown stay meanwhile, and are read anew after. */
  active: boolean;
  /** The most lines kept (read once, when the view is made). */
  capacity?: number;
  /** Starts the stream over when it changes (e.g. an endpoint's servers were replaced). */
  restart?: string;
}

export interface IChannelLog {
  /** The lines (read them while rendering: they change without a new object). */
  buffer: LogBuffer;
  state: ChannelLogState;
  /** The job's status sent with `end`, once the log was read to its end. */
  endStatus: string | null;
  /** The last read's error, until the next connection opens ('' when none). */
  error: string;
}

/** Stream one log channel of job `jobId` while `active`. */
export function useChannelLog(api: KFApi, jobId: string, options: IChannelLogOptions): IChannelLog {
  const { channel, tail, follow, active, capacity = LOG_CAPACITY, restart = '' } = options;
  const buffer = React.useRef<LogBuffer | null>(null);
  if (buffer.current === null) {
    buffer.current = new LogBuffer({ capacity });
  }
  const [state, setState] = React.useState<ChannelLogState>('idle');
  const [endStatus, setEndStatus] = React.useState<string | null>(null);
  const [error, setError] = React.useState('');
  const [, setVersion] = React.useState(0);
  const frame = React.useRef(0);
  /** Whose lines the buffer holds (`job\nchannel`). */
  const held = React.useRef('');

  React.useEffect(() => {
    const log = buffer.current!;
    const redraw = (): void => {
      if (!frame.current) {
        frame.current = requestAnimationFrame(() => {
          frame.current = 0;
          setVersion(v => v + 1);
        });
      }
    };
    const key = channel === null ? '' : `${jobId}\n${channel}`;
    if (held.current !== key) {
      // another channel: its lines only (a restart of the same one keeps them until it opens)
      held.current = key;
      log.clear();
      setVersion(v => v + 1);
      setEndStatus(null);
      setError('');
    }
    if (channel === null) {
      setState('idle');
      return;
    }
    if (!active) {
      setState('paused');
      return;
    }
    const follower = new LogFollower(
      (onEvent, signal, onOpen) => api.streamLogs(jobId, { channel, tail, follow }, onEvent, signal, onOpen),
      {
        opened: () => {
          log.clear();
          setError('');
          setEndStatus(null);
          redraw();
        },
        line: text => {
          log.append([text]);
          redraw();
        },
        state: (next, detail) => {
          setState(next);
          if (next === 'ended') {
            setEndStatus(detail.status || 'ended');
          } else if (next === 'error' || next === 'waiting' || next === 'failed') {
            setError(detail.message ?? '');
          }
        }
      },
      { retry: follow }
    );
    follower.start();
    return () => {
      follower.stop();
      if (frame.current) {
        cancelAnimationFrame(frame.current);
        frame.current = 0;
      }
    };
  }, [api, jobId, channel, tail, follow, active, restart]);

  return { buffer: buffer.current, state, endStatus, error };
}

/** A tab per log channel (their labels). */
export function ChannelTabs(props: {
  channels: readonly IChannel[];
  selected: string | null;
  onSelect: (name: string) => void;
  label?: string;
}): JSX.Element {
  const { channels, selected, onSelect, label = 'Log channels' } = props;
  return (
    <div className="kf-RankTabs" role="tablist" aria-label={label}>
      {channels.map(c => (
        <button
          key={c.name}
          type="button"
          role="tab"
          aria-selected={c.name === selected}
          className={`kf-RankTab${c.name === selected ? ' kf-mod-active' : ''}`}
          data-channel={c.name}
          data-rank={c.rank ?? undefined}
          onClick={() => onSelect(c.name)}
        >
          {c.label}
        </button>
      ))}
    </div>
  );
}

/** A job's log: a tab per channel of `job.channels.logs`, the chosen one streamed live. */
export function LogViewer(props: {
  api: KFApi;
  job: IJob;
  /** Stream only while shown: a hidden tab holds no connection open. */
  visible?: boolean;
}): JSX.Element {
  const { api, job, visible = true } = props;
  const channels = logChannels(job);
  const [selected, setSelected] = React.useState<string | null>(null);
  // a failed job opens on the rank that failed it
  const channel = pickChannel(channels, selected, job.status === 'Failed' ? job.failed_rank ?? null : null);
  const [follow, setFollow] = React.useState(true);
  const followState = React.useRef(new FollowState(true));
  const pre = React.useRef<HTMLPreElement>(null);
  const terminal = isTerminal(job.status);
  const { buffer: log, state, endStatus, error } = useChannelLog(api, job.id, {
    channel: channel?.name ?? null,
    tail: LOG_TAIL,
    follow: true,
    active: visible
  });

  // Stick to the bottom while following.
  React.useLayoutEffect(() => {
    const node = pre.current;
    if (node && followState.current.following) {
      if (node.scrollTop + node.clientHeight < node.scrollHeight) {
        followState.current.willAutoScroll();
        node.scrollTop = node.scrollHeight;
      }
    }
  });

  // No channel yet: the job has not reached its backend (or never did).
  const streamState: ChannelLogState | 'none' = channel ? state : terminal ? 'none' : 'waiting';
  const statusText =
    streamState === 'streaming'
      ? terminal
        ? 'streaming'
        : 'live'
      : streamState === 'ended'
        ? `end of log${endStatus ? ` (${endStatus})` : ''}`
        : streamState === 'waiting'
          ? 'waiting for the log…'
          : streamState === 'error'
            ? `reconnecting… ${error}`
            : streamState === 'failed'
              ? `cannot read the log: ${error}`
              : streamState === 'paused'
                ? 'paused (tab hidden)'
                : streamState === 'none'
                  ? 'no log'
                  : 'connecting…';

  return (
    <div
      className="kf-LogViewer"
      data-channel={channel?.name ?? ''}
      data-rank={channel?.rank ?? undefined}
      data-stream={streamState}
    >
      <div className="kf-LogViewer-bar">
        <ChannelTabs channels={channels} selected={channel?.name ?? null} onSelect={setSelected} />
        <span className="kf-LogViewer-state">{statusText}</span>
        <label className="kf-Follow" title="Keep the newest line in view">
          <input
            type="checkbox"
            checked={follow}
            onChange={() => {
              const next = followState.current.toggle();
              setFollow(next);
              if (next && pre.current) {
                followState.current.willAutoScroll();
                pre.current.scrollTop = pre.current.scrollHeight;
              }
            }}
          />
          Follow
        </label>
        <Button
          title="Copy the lines shown"
          onClick={() => void navigator.clipboard?.writeText(log.text())}
        >
          Copy
        </Button>
      </div>
      {log.dropped > 0 ? (
        <div className="kf-LogViewer-dropped">
          {log.dropped} earlier {log.dropped === 1 ? 'line' : 'lines'} not kept (the view
          holds the last {log.capacity}).
        </div>
      ) : null}
      <pre
        ref={pre}
        className="kf-LogViewer-text"
        onScroll={e => {
          const node = e.currentTarget;
          if (followState.current.onScroll(node)) {
            setFollow(followState.current.following);
          }
        }}
      >
        {log.length ? log.text() : <span className="kf-LogViewer-empty">(no output yet)</span>}
      </pre>
    </div>
  );
}
