import { LabIcon } from '@jupyterlab/ui-components';

/**
 * The sidebar's icon: a helm-like wheel around a "K", drawn for this project
 * in the theme's icon colour (`jp-icon3`), so it follows light and dark themes.
 */
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2.2a9.8 9.8 0 1 0 0 19.6 9.8 9.8 0 0 0 0-19.6zm0 2a7.8 7.8 0 1 1 0 15.6 7.8 7.8 0 0 1 0-15.6z"/>
    <path d="M8.6 7h2.1v4.1L14.4 7h2.6l-4 4.4 4.2 5.6h-2.6l-3.1-4.3-.8.9V17H8.6z"/>
    <rect x="11" y="0.6" width="2" height="2.6" rx="0.6"/>
    <rect x="11" y="20.8" width="2" height="2.6" rx="0.6"/>
    <rect x="0.6" y="11" width="2.6" height="2" rx="0.6"/>
    <rect x="20.8" y="11" width="2.6" height="2" rx="0.6"/>
  </g>
</svg>`;

export const kubeflowIcon = new LabIcon({ name: 'kfjupyter:kubeflow', svgstr: svg });
