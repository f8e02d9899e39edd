/**
 * One ECharts chart in React: made on mount, given a new option when its inputs change,
 * resized with its box (a sidebar section, an output area), drawn again in the colours of
 * a new theme, and disposed on unmount.
 */

import * as React from 'react';

import { EChartsInstance, initChart } from './echarts';
import { ChartOption } from './options';
import { IChartTheme, readTheme } from './theme';

/** The page's theme, read again whenever JupyterLab switches it. */
export function useChartTheme(): IChartTheme {
  const [theme, setTheme] = React.useState<IChartTheme>(() => readTheme());
  React.useEffect(() => {
    // JupyterLab sets these on <body> once the new theme's CSS is in.
    const observer = new MutationObserver(() => setTheme(readTheme()));
    observer.observe(document.body, {
      attributes: true,
      attributeFilter: ['data-jp-theme-light', 'data-jp-theme-name']
    });
    return () => observer.disconnect();
  }, []);
  return theme;
}

export function EChart(props: {
  /** The chart's option in a theme (a pure builder of charts/options.ts or charts/study.ts). */
  option: (theme: IChartTheme, width: number) => ChartOption;
  /** What the option depends on besides the theme (it is rebuilt when one changes). */
  deps: React.DependencyList;
  height?: number;
  className?: string;
  label: string;
  /** Data attributes of the chart's box (what it shows, for tests and styling). */
  data?: Record<string, string | number>;
}): JSX.Element {
  const { height = 220, className, label } = props;
  const box = React.useRef<HTMLDivElement>(null);
  const chart = React.useRef<EChartsInstance | null>(null);
  const theme = useChartTheme();
  // the legend wraps by the chart's width: rebuilt when it changes by a step of 40 px
  const [width, setWidth] = React.useState(560);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const option = React.useMemo(() => props.option(theme, width), [theme, width, ...props.deps]);

  React.useEffect(() => {
    const element = box.current;
    if (!element) {
      return;
    }
    const instance = initChart(element);
    chart.current = instance;
    if (element.clientWidth > 0) {
      setWidth(Math.round(element.clientWidth / 40) * 40);
    }
    let frame = 0;
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => {
        if (!instance.isDisposed() && element.clientWidth > 0) {
          instance.resize();
          setWidth(Math.round(element.clientWidth / 40) * 40);
        }
      });
    });
    observer.observe(element);
    return () => {
      cancelAnimationFrame(frame);
      observer.disconnect();
      instance.dispose();
      chart.current = null;
    };
  }, []);

  React.useEffect(() => {
    chart.current?.setOption(option, { notMerge: true, lazyUpdate: false });
  }, [option]);

  const data: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(props.data ?? {})) {
    data[`data-${k}`] = v;
  }
  return (
    <div
      className={`kf-EChart${className ? ` ${className}` : ''}`}
      ref={box}
      role="img"
      aria-label={label}
      style={{ height, width: '100%' }}
      {...data}
    />
  );
}
