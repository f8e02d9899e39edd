/**
 * Chart colours from JupyterLab's theme: CSS variables read at render time (so light,
 * dark and any other theme work), with fallbacks for a page that has none. Pure but for
 * `readTheme` (it reads the DOM); unit-tested in test/charts.spec.ts.
 */

export interface IChartTheme {
  /** Axis labels, legend, tooltips: the theme's primary text. */
  text: string;
  /** Axis names and secondary text (still AA on the background). */
  muted: string;
  /** Axis lines. */
  axis: string;
  /** Split (grid) lines. */
  grid: string;
  /** The chart's background (tooltips use it too). */
  background: string;
  /** One colour per series (ranks, runs, trials). */
  palette: string[];
  /** COMPLETE trials, the first series. */
  primary: string;
  /** Pruned trials. */
  warn: string;
  /** The best-so-far line, the best trial. */
  success: string;
  error: string;
  fontFamily: string;
  dark: boolean;
}

/** The CSS variables a theme is read from, with the fallback of each (light). */
export const THEME_VARIABLES: Record<string, string> = {
  '--jp-ui-font-color0': 'rgba(0, 0, 0, 1)',
  '--jp-ui-font-color1': 'rgba(0, 0, 0, 0.87)',
  '--jp-ui-font-color2': 'rgba(0, 0, 0, 0.54)',
  '--jp-border-color1': '#bdbdbd',
  '--jp-border-color2': '#e0e0e0',
  '--jp-layout-color0': '#ffffff',
  '--jp-layout-color1': '#ffffff',
  '--jp-brand-color1': '#1976d2',
  '--jp-warn-color1': '#f57c00',
  '--jp-success-color1': '#388e3c',
  '--jp-error-color1': '#d32f2f',
  '--jp-info-color1': '#0097a7',
  '--jp-accent-color1': '#7b1fa2',
  '--jp-ui-font-family': 'system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif'
};

/**
 * A theme from a reader of CSS variables (`name` → its value, '' when unset); `dark` is
 * the page's `data-jp-theme-light="false"`.
 */
export function themeFrom(read: (name: string) => string, dark: boolean): IChartTheme {
  const v = (name: string): string => {
    const value = (read(name) || '').trim();
    return value || THEME_VARIABLES[name];
  };
  const palette = [
    v('--jp-brand-color1'),
    v('--jp-warn-color1'),
    v('--jp-success-color1'),
    v('--jp-error-color1'),
    v('--jp-info-color1'),
    v('--jp-accent-color1')
  ];
  return {
    text: v('--jp-ui-font-color1'),
    muted: v('--jp-ui-font-color1'),
    axis: v('--jp-border-color1'),
    grid: v('--jp-border-color2'),
    background: v('--jp-layout-color1'),
    palette,
    primary: palette[0],
    warn: v('--jp-warn-color1'),
    success: v('--jp-success-color1'),
    error: v('--jp-error-color1'),
    fontFamily: v('--jp-ui-font-family'),
    dark
  };
}

/** The page's current theme (what JupyterLab's CSS variables say now). */
export function readTheme(element: Element = document.body): IChartTheme {
  const style = getComputedStyle(element);
  const dark = document.body.getAttribute('data-jp-theme-light') === 'false';
  return themeFrom(name => style.getPropertyValue(name), dark);
}

/** The series colour `i` (wrapping around the palette). */
export function seriesColour(theme: IChartTheme, i: number): string {
  return theme.palette[((i % theme.palette.length) + theme.palette.length) % theme.palette.length];
}
