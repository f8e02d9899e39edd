/**
 * The Experiments panel: the sixth section of the Kubeflow sidebar (IKubeflowSidebar.addPanel).
 * A run's links open its job's tab and the cell that started it (the Jobs panel's
 * commands) and a model version it registered (the Models panel's `kfjupyter:show-model`).
 * It is re-read on the sidebar's job events.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { ExperimentsPanelWidget, IRunActions } from './components/experiments';
import { ExperimentsApi } from './experiments';
import { IKubeflowSidebar } from './sidebar';

export namespace ExperimentsCommandIDs {
  export const show = 'kfjupyter:show-experiments';
}

export const experimentsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:experiments',
  description: 'The Experiments panel of the Kubeflow sidebar: runs, compare, re-run.',
  autoStart: true,
  requires: [IKubeflowSidebar],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, sidebar: IKubeflowSidebar, palette: ICommandPalette | null): void => {
    const { commands } = app;
    const actions: IRunActions = {
      openJob: id => void commands.execute('kfjupyter:open-job', { id }),
      openCell: id => void commands.execute('kfjupyter:open-job-source', { id }),
      openModel: model => void commands.execute('kfjupyter:show-model', { model })
    };
    const panel = new ExperimentsPanelWidget({
      api: new ExperimentsApi(sidebar.jobs.api),
      jobChanged: sidebar.jobs.jobChanged,
      actions
    });
    sidebar.addPanel(panel);
    commands.addCommand(ExperimentsCommandIDs.show, {
      label: 'Kubeflow: Show Experiments',
      caption: 'Open the Kubeflow sidebar at its Experiments panel',
      execute: () => sidebar.show(panel)
    });
    palette?.addItem({ command: ExperimentsCommandIDs.show, category: 'Kubeflow' });
  }
};
