import * as React from 'react';

import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { ISignal } from '@lumino/signaling';

import { jobClock } from '../format';
import { IJob, isTerminal } from '../types';

/**
 * Re-render on a Lumino signal; returns the latest value of `read()`, which must return
 * the same value while nothing changed (a model's immutable state, a string).
 *
 * React's `useSyncExternalStore`: it reads again once it has subscribed, so a change
 * emitted between the first render and the subscription (a jobs page answered while
 * React was painting) is not missed, as it was with a subscription in `useEffect`.
 */
export function useSignal<S, A, T>(signal: ISignal<S, A>, read: () => T): T {
  const subscribe = React.useCallback(
    (onChange: () => void) => {
      const slot = () => onChange();
      signal.connect(slot);
      return () => {
        signal.disconnect(slot);
      };
    },
    [signal]
  );
  return React.useSyncExternalStore(subscribe, read);
}

/**
 * The answer of a request made again whenever `deps` change (the one before aborted):
 * the last value received (kept while the next is on its way) and the error of the last
 * request, if it failed.
 */
export function useRequest<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: React.DependencyList
): { value: T | null; error: string } {
  const [state, setState] = React.useState<{ value: T | null; error: string }>({ value: null, error: '' });
  React.useEffect(() => {
    const ctrl = new AbortController();
    load(ctrl.signal)
      .then(value => setState({ value, error: '' }))
      .catch(e => {
        if ((e as Error).name !== 'AbortError') {
          setState(s => ({ value: s.value, error: (e as Error)?.message ?? String(e) }));
        }
      });
    return () => ctrl.abort();
  }, deps);
  return state;
}

/** The current time, updated every `ms` while `active` (no timer otherwise). */
export function useNow(active: boolean, ms = 1000): number {
  const [now, setNow] = React.useState(() => Date.now());
  React.useEffect(() => {
    if (!active) {
      return;
    }
    setNow(Date.now());
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [active, ms]);
  return active ? now : Date.now();
}

/** Whether the browser tab is shown (re-rendering when it changes). */
export function usePageVisible(): boolean {
  const read = (): boolean => typeof document === 'undefined' || document.visibilityState !== 'hidden';
  const [visible, setVisible] = React.useState(read);
  React.useEffect(() => {
    const onChange = (): void => setVisible(read());
    document.addEventListener('visibilitychange', onChange);
    return () => document.removeEventListener('visibilitychange', onChange);
  }, []);
  return visible;
}

export function StatusBadge(props: { status: string }): JSX.Element {
  const { status } = props;
  return (
    <span
      className={`kf-StatusBadge kf-status-${status.toLowerCase()}`}
      data-status={status}
      title={status}
    >
      <span className="kf-StatusBadge-dot" aria-hidden="true" />
      {status}
    </span>
  );
}

export function Duration(props: {
  job: IJob;
  receivedAt?: number;
  now: number;
}): JSX.Element {
  const { job, receivedAt, now } = props;
  const clock = jobClock(job, now, receivedAt);
  return (
    <span
      className={`kf-Duration${isTerminal(job.status) ? '' : ' kf-mod-ticking'}`}
      title={clock.title}
    >
      {clock.text}
    </span>
  );
}

export function Button(
  props: React.ButtonHTMLAttributes<HTMLButtonElement> & { accent?: 'warn' }
): JSX.Element {
  const { accent, className, ...rest } = props;
  return (
    <button
      type="button"
      className={`jp-Button kf-Button${accent ? ` kf-mod-${accent}` : ''}${
        className ? ` ${className}` : ''
      }`}
      {...rest}
    />
  );
}

/**
 * A ReactWidget that renders again when it is shown or hidden (the sidebar, its section
 * folded, a tab in the background), so its content can pass `this.isVisible` down and
 * hold streams, polls and timers only while it is seen.
 */
export abstract class VisibilityAwareWidget extends ReactWidget {
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.update();
  }

  protected onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    this.update(); // runs after the hide, when isVisible is false
  }
}
