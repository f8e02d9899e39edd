/**
 * The Endpoints panel: the fourth section of the Kubeflow sidebar. It also provides the
 * `kfjupyter:deploy-model` command that the Models panel's Deploy button calls.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';

import { EndpointsApi, EndpointsPanelWidget } from './components/endpoints';
import { IKubeflowSidebar } from './sidebar';

export namespace EndpointsCommandIDs {
  export const show = 'kfjupyter:show-endpoints';
  export const deploy = 'kfjupyter:deploy-model';
}

export const endpointsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:endpoints',
  description: 'The Endpoints panel of the Kubeflow sidebar: deployed models, try it, promote/rollback, undeploy.',
  autoStart: true,
  requires: [IKubeflowSidebar],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, sidebar: IKubeflowSidebar, palette: ICommandPalette | null): void => {
    const { commands } = app;
    const api = new EndpointsApi(sidebar.jobs.api);
    const panel = new EndpointsPanelWidget(api);
    sidebar.addPanel(panel);
    sidebar.jobs.jobChanged.connect((_, job) => {
      if (job.kind === 'endpoint') {
        panel.refresh();
      }
    });
    commands.addCommand(EndpointsCommandIDs.show, {
      label: 'Kubeflow: Show Endpoints',
      execute: () => sidebar.show(panel)
    });
    commands.addCommand(EndpointsCommandIDs.deploy, {
      label: 'Deploy Model Version',
      execute: async args => {
        const model = String(args.model ?? '');
        const version = args.version;
        try {
          await api.deploy(version !== undefined ? `${model}:${version}` : model);
          panel.refresh();
          sidebar.show(panel);
        } catch (error) {
          await showErrorMessage('Cannot deploy the model', error as Error);
        }
      }
    });
    palette?.addItem({ command: EndpointsCommandIDs.show, category: 'Kubeflow' });
  }
};
