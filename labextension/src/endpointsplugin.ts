/**
 * The Endpoints panel: the fourth section of the Kubeflow sidebar. It also provides the
 * `kfjupyter:deploy-model` command that the Models panel's Deploy button calls.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { EndpointsApi, EndpointsPanelWidget, showFailure } from './components/endpoints';
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
        const ref = version !== undefined ? `${model}:${version}` : model;
        try {
          await api.deploy(ref);
          panel.refresh();
          sidebar.show(panel);
        } catch (error) {
          // a server that failed to start left a Failed endpoint that says why: show it
          panel.refresh();
          await showFailure(`Cannot deploy ${ref}`, error);
        }
      }
    });
    palette?.addItem({ command: EndpointsCommandIDs.show, category: 'Kubeflow' });
  }
};
