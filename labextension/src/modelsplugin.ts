/**
 * The Models panel: the third section of the Kubeflow sidebar (IKubeflowSidebar.addPanel).
 * Lineage links open a job's tab (the Jobs panel's command) or the notebook.
 *
 * Deploy hook: when the serving issue's REST API exists, pass `deploy` in the actions
 * below (e.g. a command `kfjupyter:deploy-model` that POSTs to it); the Deploy button
 * appears on every version then. Until then it stays hidden.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { IModelActions, ModelsPanelWidget } from './components/models';
import { ModelsApi } from './models';
import { IKubeflowSidebar } from './sidebar';

export namespace ModelsCommandIDs {
  export const show = 'kfjupyter:show-models';
}

export const modelsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:models',
  description: 'The Models panel of the Kubeflow sidebar: the model registry.',
  autoStart: true,
  requires: [IKubeflowSidebar],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, sidebar: IKubeflowSidebar, palette: ICommandPalette | null): void => {
    const { commands } = app;
    const actions: IModelActions = {
      openJob: id => void commands.execute('kfjupyter:open-job', { id }),
      openNotebook: path => void commands.execute('docmanager:open', { path })
      // deploy: (model, version) => commands.execute('kfjupyter:deploy-model', { model, version })
    };
    const panel = new ModelsPanelWidget({ api: new ModelsApi(sidebar.jobs.api), actions });
    sidebar.addPanel(panel);
    commands.addCommand(ModelsCommandIDs.show, {
      label: 'Kubeflow: Show Registered Models',
      execute: () => sidebar.show(panel)
    });
    palette?.addItem({ command: ModelsCommandIDs.show, category: 'Kubeflow' });
  }
};
