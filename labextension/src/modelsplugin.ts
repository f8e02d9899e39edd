/**
 * The Models panel: the third section of the Kubeflow sidebar (IKubeflowSidebar.addPanel).
 * Lineage links open a job's tab (the Jobs panel's command) or the notebook.
 *
 * Deploy: the actions pass `deploy`, which runs the Endpoints plugin's
 * `kfjupyter:deploy-model` command (POST /endpoints), so every version shows its Deploy button.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { IModelActions, ModelsPanelWidget } from './components/models';
import { ModelsApi } from './models';
import { IKubeflowSidebar } from './sidebar';

export namespace ModelsCommandIDs {
  export const show = 'kfjupyter:show-models';
  /** `{model}`: the Models panel with that model's versions open (lineage links). */
  export const showModel = 'kfjupyter:show-model';
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
      openNotebook: path => void commands.execute('docmanager:open', { path }),
      // the Endpoints plugin's command (POST /endpoints)
      deploy: async (model, version) => {
        await commands.execute('kfjupyter:deploy-model', { model, version });
      }
    };
    const panel = new ModelsPanelWidget({ api: new ModelsApi(sidebar.jobs.api), actions });
    sidebar.addPanel(panel);
    // the registry changed (any process: a kernel's register_model, the CLI): read it again;
    // and after the push channel came back (events may have been missed)
    sidebar.jobs.streamEvent.connect((_, event) => {
      if (event.event === 'model') {
        panel.refresh();
      }
    });
    sidebar.jobs.connectionChanged.connect((_, connection) => {
      if (connection === 'live') {
        panel.refresh();
      }
    });
    commands.addCommand(ModelsCommandIDs.show, {
      label: 'Kubeflow: Show Registered Models',
      execute: () => sidebar.show(panel)
    });
    commands.addCommand(ModelsCommandIDs.showModel, {
      label: args => `Show Model ${String(args.model ?? '')}`,
      execute: args => {
        sidebar.show(panel);
        panel.focusModel(String(args.model ?? ''));
      }
    });
    palette?.addItem({ command: ModelsCommandIDs.show, category: 'Kubeflow' });
  }
};
