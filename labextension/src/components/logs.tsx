/**
 * A job's log, one rank at a time, streamed live (`GET …/logs/stream`).
 *
 * One stream per viewer: switching rank or closing the tab aborts it. Lines
 * go into a bounded `LogBuffer`; the view redraws at most once per frame.
 */

import * as React from 'react';

import { decodeLogLine, KFApi, KFApiError } from '../api';
import { FollowState, LogBuffer } from '../logbuffer';
import { isAbortError } from '../sse';
import { IJob, isTerminal } from '../types';
import { Button } from './common';

export const LOG_TAIL = 1000;
export const LOG_CAPACITY = 5000;

function parseField(data: string, field: string): string {
  try {
    const value = JSON.parse(data)?.[field];
    return typeof value === 'string' ? value : '';
  } catch {
    return '';
  }
}

type StreamState = 'connecting' | 'streaming' | 'ended' | 'waiting' | 'error' | 'paused';

export function LogViewer(props: {
  api: KFApi;
  job: IJob;
  /** Stream only while shown: a hidden tab holds no connection open. */
  visible?: boolean;
}): JSX.Element {
  const { api, job, visible = true } = props;
  const [rank, setRank] = React.useState(0);
  const [follow, setFollow] = React.useState(true);
  const [streamState, setStreamState] = React.useState<StreamState>('connecting');
  const [endStatus, setEndStatus] = React.useState<string | null>(null);
  const [message, setMessage] = React.useState('');
  const [, setVersion] = React.useState(0);
  const buffer = React.useRef(new LogBuffer({ capacity: LOG_CAPACITY }));
  const followState = React.useRef(new FollowState(true));
  const pre = React.useRef<HTMLPreElement>(null);
  const frame = React.useRef(0);
  const terminal = isTerminal(job.status);

  React.useEffect(() => {
    if (!visible) {
      // Keep the lines shown; the stream starts over (fresh tail) when shown again.
      setStreamState('paused');
      return;
    }
    const abort = new AbortController();
    const log = buffer.current;
    log.clear();
    setVersion(v => v + 1);
    setEndStatus(null);
    setMessage('');
    const redraw = () => {
      if (!frame.current) {
        frame.current = requestAnimationFrame(() => {
          frame.current = 0;
          setVersion(v => v + 1);
        });
      }
    };
    const run = async () => {
      for (let attempt = 0; !abort.signal.aborted; attempt++) {
        setStreamState(attempt === 0 ? 'connecting' : 'waiting');
        let ended = false;
        try {
          await api.streamLogs(
            job.id,
            rank,
            LOG_TAIL,
            event => {
              if (event.event === 'message') {
                log.append([decodeLogLine(event.data)]);
                setStreamState('streaming');
                redraw();
              } else if (event.event === 'end') {
                ended = true;
                setEndStatus(parseField(event.data, 'status') || 'ended');
              } else if (event.event === 'error') {
                setMessage(parseField(event.data, 'message') || 'the log stream failed');
              }
            },
            abort.signal
          );
          if (ended) {
            setStreamState('ended');
            return;
          }
          // Closed without an end (server restart, backend error): read again.
          setStreamState('error');
        } catch (error) {
          if (isAbortError(error) || abort.signal.aborted) {
            return;
          }
          // No log yet, or the connection dropped: start over after a pause.
          const status = error instanceof KFApiError ? error.status : 0;
          setMessage((error as Error).message);
          setStreamState(status === 404 ? 'waiting' : 'error');
        }
        await new Promise(resolve => setTimeout(resolve, Math.min(5000, 1000 * (attempt + 1))));
        if (abort.signal.aborted) {
          return;
        }
        log.clear();
        redraw();
      }
    };
    void run();
    return () => {
      abort.abort();
      if (frame.current) {
        cancelAnimationFrame(frame.current);
        frame.current = 0;
      }
    };
  }, [api, job.id, rank, visible]);

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

  const log = buffer.current;
  const ranks = Array.from({ length: Math.max(1, job.workers || 1) }, (_, i) => i);
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
            ? `reconnecting… ${message}`
            : streamState === 'paused'
              ? 'paused (tab hidden)'
              : 'connecting…';

  return (
    <div className="kf-LogViewer" data-rank={rank} data-stream={streamState}>
      <div className="kf-LogViewer-bar">
        <div className="kf-RankTabs" role="tablist" aria-label="Ranks">
          {ranks.map(r => (
            <button
              key={r}
              type="button"
              role="tab"
              aria-selected={r === rank}
              className={`kf-RankTab${r === rank ? ' kf-mod-active' : ''}`}
              data-rank={r}
              onClick={() => setRank(r)}
            >
              rank {r}
            </button>
          ))}
        </div>
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
