/**
 * "Run with parameters…" (issue 13, point 11): a notebook toolbar button and a command
 * palette entry that read the notebook's parameters cell (or Kale's
 * `pipeline-parameters` cell), ask for values or a sweep grid and the parallelism, start
 * the papermill run or sweep (`POST /notebook-runs`), and open its job tab.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ToolbarButton } from '@jupyterlab/ui-components';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { RunDialogBody } from './components/notebookrun';
import { kubeflowIcon } from './icons';
import { NotebookRunApi, setDocumentOpener } from './notebookrun';
import { IKubeflowSidebar } from './sidebar';
import { IJob } from './types';

export namespace NotebookRunCommandIDs {
  export const runWithParameters = 'kfjupyter:run-with-parameters';
}

/** The command that opens a job's tab (index.ts's `CommandIDs.openJob`). */
const OPEN_JOB = 'kfjupyter:open-job';

/** A dialog that stays open while its Start is refused, showing why. */
class RunDialog extends Dialog<IJob | null> {
  constructor(private readonly _form: RunDialogBody) {
    super({
      title: 'Run with parameters',
      body: _form,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start', className: 'kf-NotebookRun-start' })],
      defaultButton: 1,
      focusNodeSelector: 'input'
    });
    this.addClass('kf-NotebookRunDialog');
  }

  resolve(index?: number): void {
    const i = index ?? 1;
    if (i !== 1 || this._form.started) {
      super.resolve(i);
      return;
    }
    void this._form.start().then(ok => {
      if (ok) {
        super.resolve(i);
      }
    });
  }
}

async function runWithParameters(app: JupyterFrontEnd, api: NotebookRunApi, panel: NotebookPanel): Promise<void> {
  const context = panel.context;
  await context.ready;
  if (context.model.dirty && !context.model.readOnly) {
    await context.save(); // the run reads the notebook from disk
  }
  const path = context.path;
  let info;
  try {
    info = await api.parameters(path);
  } catch (error) {
    await showErrorMessage('Run with parameters', (error as Error).message || String(error));
    return;
  }
  const form = new RunDialogBody(api, path, info);
  const result = await new RunDialog(form).launch();
  const job = result.button.accept ? form.started : null;
  if (job) {
    await app.commands.execute(OPEN_JOB, { id: job.id });
  }
}

class ToolbarExtension implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  constructor(private readonly _app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      className: 'kf-RunWithParameters',
      icon: kubeflowIcon,
      label: 'Run with parameters…',
      tooltip: "Run this notebook with papermill as a job: set its parameters, or a sweep of them",
      onClick: () => {
        this._app.shell.activateById(panel.id);
        void this._app.commands.execute(NotebookRunCommandIDs.runWithParameters);
      }
    });
    panel.toolbar.insertItem(10, 'kfjupyter-run-with-parameters', button);
    return new DisposableDelegate(() => button.dispose());
  }
}

export const notebookRunPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:notebook-run',
  description: 'Run with parameters…: a papermill run or sweep of the notebook, from its toolbar.',
  autoStart: true,
  requires: [IKubeflowSidebar, INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    sidebar: IKubeflowSidebar,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ): void => {
    const api = new NotebookRunApi(sidebar.jobs.api);
    setDocumentOpener(path => app.commands.execute('docmanager:open', { path }));
    app.commands.addCommand(NotebookRunCommandIDs.runWithParameters, {
      label: 'Run with parameters…',
      caption: "Run the notebook with papermill as a job: its parameters' values, or a sweep of them",
      icon: args => (args.isPalette ? undefined : kubeflowIcon),
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const panel = tracker.currentWidget;
        if (panel) {
          await runWithParameters(app, api, panel);
        }
      }
    });
    app.docRegistry.addWidgetExtension('Notebook', new ToolbarExtension(app));
    palette?.addItem({ command: NotebookRunCommandIDs.runWithParameters, category: 'Kubeflow' });
  }
};
