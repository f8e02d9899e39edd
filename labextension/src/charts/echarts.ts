/**
 * ECharts, tree-shaken: the core with only the charts and components the extension draws
 * (line, scatter, bar, parallel coordinates; grid, tooltip, legend), rendered as SVG
 * (crisp at any zoom, text selectable).
 */

import { BarChart, LineChart, ParallelChart, ScatterChart } from 'echarts/charts';
import { GridComponent, LegendComponent, ParallelComponent, TooltipComponent } from 'echarts/components';
import * as echarts from 'echarts/core';
import { SVGRenderer } from 'echarts/renderers';

let registered = false;

/**
 * A chart on `element`, drawn as SVG. The charts and components are registered on first
 * use (in a function, not at import: a bundler may skip a module that only re-exports).
 */
export function initChart(element: HTMLElement): echarts.ECharts {
  if (!registered) {
    echarts.use([
      BarChart,
      LineChart,
      ParallelChart,
      ScatterChart,
      GridComponent,
      LegendComponent,
      ParallelComponent,
      TooltipComponent,
      SVGRenderer
    ]);
    registered = true;
  }
  return echarts.init(element, undefined, { renderer: 'svg' });
}

export type EChartsInstance = echarts.ECharts;
