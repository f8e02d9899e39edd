/**
 * The Pipeline panel: a section of the Kubeflow sidebar for the active notebook (step
 * tags of the active cell, the DAG, Compile / Run / Export YAML, the latest run's steps).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { PipelinePanelWidget } from './components/pipeline';
import { PipelineApi } from './pipelineapi';
import { IKubeflowSidebar } from './sidebar';

export namespace PipelineCommandIDs {
  export const show = 'kfjupyter:show-pipeline';
}

export const pipelinePlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:pipeline',
  description: "The Pipeline panel of the Kubeflow sidebar: the active notebook's step tags, DAG and runs.",
  autoStart: true,
  requires: [IKubeflowSidebar, INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    sidebar: IKubeflowSidebar,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ): void => {
    const api = new PipelineApi(sidebar.jobs.api);
    const panel = new PipelinePanelWidget(tracker, api, id => app.shell.activateById(id), sidebar.jobs.jobChanged);
    sidebar.addPanel(panel);
    app.commands.addCommand(PipelineCommandIDs.show, {
      label: 'Kubeflow: Show Pipeline',
      execute: () => sidebar.show(panel)
    });
    palette?.addItem({ command: PipelineCommandIDs.show, category: 'Kubeflow' });
  }
};
