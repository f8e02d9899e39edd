/**
 * kfjupyter's JupyterLab extension: the Kubeflow sidebar.
 *
 * The sidebar is a `SidePanel` (an accordion): Jobs is its first section, and
 * later capabilities add theirs through the `IKubeflowSidebar` token (Tuning,
 * `tuningplugin.ts`, is the second; Pipeline, Models, Endpoints may follow).
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin,
  LabShell
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  showDialog,
  showErrorMessage,
  WidgetTracker
} from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { refreshIcon, SidePanel, Toolbar, ToolbarButton } from '@jupyterlab/ui-components';
import { AccordionPanel, SplitPanel, Widget } from '@lumino/widgets';

import { KFApi } from './api';
import { findCellIndex } from './cells';
import { JobDetailWidget } from './components/detail';
import { ConnectionWidget, IJobActions, JobsPanelWidget } from './components/jobs';
import { cancelQuestion, notebookApiPath } from './format';
import { kubeflowIcon } from './icons';
import { JobsModel } from './model';
import { IKubeflowSidebar } from './sidebar';
import { SectionSizer } from './sidebarlayout';
import { endpointsPlugin } from './endpointsplugin';
import { modelsPlugin } from './modelsplugin';
import { experimentsPlugin } from './experimentsplugin';
import { pipelinePlugin } from './pipelineplugin';
import { tuningPlugin } from './tuningplugin';
import { mimePlugin } from './mimeplugin';
import { notebookRunPlugin } from './notebookrunplugin';
import { IUserSettings } from './types';

export { KFApi } from './api';
export { JobsModel } from './model';
export { IKubeflowSidebar } from './sidebar';
export { StudiesModel } from './studies';
export * from './types';

const PLUGIN_ID = 'kfjupyter:plugin';

export namespace CommandIDs {
  export const showJobs = 'kfjupyter:show-jobs';
  export const refresh = 'kfjupyter:refresh-jobs';
  export const openJob = 'kfjupyter:open-job';
  export const cancelJob = 'kfjupyter:cancel-job';
  export const openSource = 'kfjupyter:open-job-source';
}

function readSettings(settings: ISettingRegistry.ISettings): IUserSettings {
  const c = settings.composite as Partial<IUserSettings>;
  return {
    defaultBackend: typeof c.defaultBackend === 'string' ? c.defaultBackend : 'local',
    namespace: typeof c.namespace === 'string' ? c.namespace : '',
    defaultImage: typeof c.defaultImage === 'string' ? c.defaultImage : ''
  };
}

/** Open a notebook and bring the cell whose source is `cell` into view. */
async function revealCell(
  app: JupyterFrontEnd,
  docManager: IDocumentManager,
  path: string,
  cell: string | null | undefined,
  notebooks: INotebookTracker | null
): Promise<boolean> {
  // A notebook already open is shown as it is: Notebook 7's document manager does not
  // always find its page's own notebook, and opening it again replaces (and saves) it.
  const widget = notebooks?.find(panel => panel.context.path === path) ?? docManager.openOrReveal(path);
  if (!widget) {
    throw new Error(`Cannot open ${path}.`);
  }
  app.shell.activateById(widget.id);
  await widget.context.ready;
  if (!(widget instanceof NotebookPanel)) {
    return false;
  }
  await widget.revealed;
  const notebook = widget.content;
  const model = notebook.model;
  if (!model) {
    return false;
  }
  const sources: string[] = [];
  for (const c of model.cells) {
    sources.push(c.sharedModel.getSource());
  }
  const index = findCellIndex(sources, cell);
  if (index < 0) {
    return false;
  }
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  await notebook.scrollToItem(index, 'center');
  return true;
}

/**
 * Notebook 7's down panel opens as thin as its content's minimum: give a job's detail
 * there a share of the window (the split between the notebook and the down panel).
 */
function giveRoom(widget: Widget): void {
  let parent = widget.parent;
  while (parent && !(parent instanceof SplitPanel)) {
    parent = parent.parent;
  }
  if (parent instanceof SplitPanel && parent.widgets.length === 2) {
    const sizes = parent.relativeSizes();
    if (sizes[1] < 0.25) {
      parent.setRelativeSizes([0.55, 0.45]);
    }
  }
}

const plugin: JupyterFrontEndPlugin<IKubeflowSidebar> = {
  id: PLUGIN_ID,
  description: 'The Kubeflow sidebar: jobs of the kfjupyter workspace, live.',
  autoStart: true,
  provides: IKubeflowSidebar,
  requires: [IDocumentManager],
  optional: [ISettingRegistry, ILayoutRestorer, ICommandPalette, INotebookTracker, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    launcher: ILauncher | null
  ): IKubeflowSidebar => {
    const { commands, shell } = app;
    const api = new KFApi(app.serviceManager.serverSettings);
    const model = new JobsModel(api);
    // JupyterLab's page config has the server's root folder; Notebook 7's has not, and
    // kfjupyter's server extension adds it under a name of its own.
    const serverRoot =
      PageConfig.getOption('serverRoot') || PageConfig.getOption('kfjupyterServerRoot');
    // JupyterLab opens a job's detail as a tab of the main area; Notebook 7's main area
    // holds one widget only (the notebook or the file browser): its `down` panel takes it.
    const detailArea = shell instanceof LabShell ? 'main' : 'down';

    const tracker = new WidgetTracker<JobDetailWidget>({ namespace: 'kfjupyter-job' });

    const actions: IJobActions = {
      open: id => void commands.execute(CommandIDs.openJob, { id }),
      cancel: async id => {
        await commands.execute(CommandIDs.cancelJob, { id });
      },
      openSource: id => void commands.execute(CommandIDs.openSource, { id })
    };

    // The sidebar: a header, a toolbar, and an accordion of panels.
    const sidebar = new SidePanel();
    sidebar.id = 'kfjupyter-sidebar';
    sidebar.addClass('kf-Sidebar');
    sidebar.title.icon = kubeflowIcon;
    sidebar.title.caption = 'Kubeflow';
    const heading = document.createElement('h2');
    heading.className = 'kf-Sidebar-title jp-text-truncated';
    heading.textContent = 'Kubeflow';
    sidebar.header.addWidget(new Widget({ node: heading }));
    sidebar.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: 'Reload the jobs',
        onClick: () => void commands.execute(CommandIDs.refresh)
      })
    );
    sidebar.toolbar.addItem('spacer', Toolbar.createSpacerItem());
    sidebar.toolbar.addItem('connection', new ConnectionWidget(model));
    const jobsPanel = new JobsPanelWidget({ model, actions, serverRoot });
    sidebar.addWidget(jobsPanel);
    shell.add(sidebar, 'left', { rank: 850, type: 'Kubeflow' });
    const sizer = new SectionSizer(sidebar.content as AccordionPanel);
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }

    commands.addCommand(CommandIDs.showJobs, {
      label: args => (args.isLauncher ? 'Kubeflow Jobs' : 'Kubeflow: Show Jobs'),
      caption: 'Open the Kubeflow sidebar at its Jobs panel',
      icon: args => (args.isLauncher ? kubeflowIcon : undefined),
      execute: () => {
        shell.activateById(sidebar.id);
      }
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'Kubeflow: Reload Jobs',
      icon: refreshIcon,
      execute: () => model.refresh()
    });

    commands.addCommand(CommandIDs.openJob, {
      label: args => (args.id ? `Open Job ${args.id}` : 'Open Job'),
      execute: async args => {
        const id = String(args.id ?? '');
        if (!id) {
          return;
        }
        let widget = tracker.find(w => w.jobId === id);
        if (!widget) {
          widget = new JobDetailWidget({ model, id, actions, serverRoot });
          await tracker.add(widget);
          shell.add(widget, detailArea);
        }
        shell.activateById(widget.id);
        if (detailArea === 'down') {
          giveRoom(widget);
        }
        return widget;
      }
    });

    commands.addCommand(CommandIDs.cancelJob, {
      label: 'Cancel Job',
      execute: async args => {
        const id = String(args.id ?? '');
        const job = model.job(id);
        if (job && !args.confirmed) {
          const question = cancelQuestion(job);
          const answer = await showDialog({
            title: question.title,
            body: question.body,
            buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Cancel job' })]
          });
          if (!answer.button.accept) {
            return;
          }
        }
        try {
          return await model.cancel(id);
        } catch (error) {
          await showErrorMessage('Cannot cancel the job', error as Error);
        }
      }
    });

    commands.addCommand(CommandIDs.openSource, {
      label: 'Open the Cell That Started the Job',
      execute: async args => {
        const id = String(args.id ?? '');
        try {
          const job = model.job(id) ?? (await model.fetchJob(id));
          const path = notebookApiPath(job.notebook, serverRoot);
          if (!path) {
            throw new Error(
              job.notebook
                ? `${job.notebook} is outside the server's root folder.`
                : 'The job was not started from a notebook.'
            );
          }
          return await revealCell(app, docManager, path, job.cell, notebooks);
        } catch (error) {
          await showErrorMessage('Cannot open the cell', error as Error);
          return false;
        }
      }
    });

    if (launcher) {
      launcher.add({ command: CommandIDs.showJobs, category: 'Kubeflow', rank: 0 });
    }

    if (palette) {
      for (const command of [CommandIDs.showJobs, CommandIDs.refresh]) {
        palette.addItem({ command, category: 'Kubeflow' });
      }
    }

    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.openJob,
        args: w => ({ id: w.jobId }),
        name: w => w.jobId
      });
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          model.userSettings = readSettings(settings);
          settings.changed.connect(() => {
            model.userSettings = readSettings(settings);
          });
        })
        .catch(reason => console.error('kfjupyter: cannot load the settings', reason));
    }

    model.start();

    return {
      jobs: model,
      addPanel: (widget: Widget) => sidebar.addWidget(widget),
      show: (widget?: Widget) => {
        shell.activateById(sidebar.id);
        const index = widget ? sidebar.widgets.indexOf(widget) : -1;
        if (index >= 0) {
          sizer.show(index);
        }
      }
    };
  }
};

export default [plugin, mimePlugin, tuningPlugin, modelsPlugin, endpointsPlugin, pipelinePlugin, experimentsPlugin, notebookRunPlugin];
