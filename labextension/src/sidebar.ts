/**
 * The Kubeflow sidebar's token: how a plugin adds a panel to it (Jobs is the
 * first section; Tuning, and later Models, Pipeline, Endpoints, follow).
 */

import { Token } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { JobsModel } from './model';

/** The Kubeflow sidebar, for plugins that add a panel to it. */
export interface IKubeflowSidebar {
  /** The jobs of the workspace, kept live. */
  readonly jobs: JobsModel;
  /** Add a section (its `title.label` names it) below the ones there. */
  addPanel(widget: Widget): void;
  /** Open the sidebar, with the section `widget` expanded when given. */
  show(widget?: Widget): void;
}

export const IKubeflowSidebar = new Token<IKubeflowSidebar>(
  'kfjupyter:IKubeflowSidebar',
  'The Kubeflow sidebar: the jobs model and a place for more panels.'
);
