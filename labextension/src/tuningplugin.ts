/**
 * The Tuning panel: a second section of the Kubeflow sidebar, added through
 * `IKubeflowSidebar.addPanel` like any later panel.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, Notification, showErrorMessage } from '@jupyterlab/apputils';

import { IStudyActions, TuningPanelWidget } from './components/tuning';
import { IKubeflowSidebar } from './sidebar';
import { registerBest, retrainBest, StudiesModel } from './studies';

export namespace TuningCommandIDs {
  export const show = 'kfjupyter:show-tuning';
  export const refresh = 'kfjupyter:refresh-studies';
  export const cancel = 'kfjupyter:cancel-study';
  export const retrainBest = 'kfjupyter:retrain-study-best';
  /** `{id}`: ask a model name, register what the best trial saved (the Models panel shows it). */
  export const registerBest = 'kfjupyter:register-study-best';
}

export const tuningPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kfjupyter:tuning',
  description: 'The Tuning panel of the Kubeflow sidebar: studies, their trials live, Cancel.',
  autoStart: true,
  requires: [IKubeflowSidebar],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    sidebar: IKubeflowSidebar,
    palette: ICommandPalette | null
  ): void => {
    const { commands } = app;
    const model = new StudiesModel(sidebar.jobs.api, sidebar.jobs);
    const actions: IStudyActions = {
      cancel: async id => {
        await commands.execute(TuningCommandIDs.cancel, { id });
      },
      retrainBest: async id => {
        await commands.execute(TuningCommandIDs.retrainBest, { id });
      },
      registerBest: async id => {
        await commands.execute(TuningCommandIDs.registerBest, { id });
      }
    };
    const panel = new TuningPanelWidget({ model, actions });
    sidebar.addPanel(panel);

    commands.addCommand(TuningCommandIDs.show, {
      label: 'Kubeflow: Show Tuning Studies',
      caption: 'Open the Kubeflow sidebar at its Tuning panel',
      execute: () => {
        sidebar.show(panel);
      }
    });
    commands.addCommand(TuningCommandIDs.refresh, {
      label: 'Kubeflow: Reload Tuning Studies',
      execute: () => model.refresh()
    });
    commands.addCommand(TuningCommandIDs.cancel, {
      label: 'Cancel Tuning Study',
      execute: async args => {
        const id = String(args.id ?? '');
        try {
          return await model.cancel(id);
        } catch (error) {
          await showErrorMessage('Cannot cancel the study', error as Error);
        }
      }
    });
    commands.addCommand(TuningCommandIDs.retrainBest, {
      label: 'Retrain with the Best Params',
      caption: "Run the study's cell again as a training job with its best trial's params",
      execute: async args => {
        const id = String(args.id ?? '');
        try {
          const job = await retrainBest(model.api, id);
          await commands.execute('kfjupyter:open-job', { id: job.id });
          return job;
        } catch (error) {
          await showErrorMessage('Cannot retrain with the best params', error as Error);
        }
      }
    });
    commands.addCommand(TuningCommandIDs.registerBest, {
      label: 'Register the Best Trial’s Model…',
      caption: "Register what the study's best trial saved to kfjupyter.output_dir() as a model version",
      execute: async args => {
        const id = String(args.id ?? '');
        const study = model.state.studies.find(s => s.id === id);
        const asked = await InputDialog.getText({
          title: 'Register the best trial’s model',
          label: 'Model name (a new version of it if it exists)',
          text: study?.name ?? '',
          okLabel: 'Register'
        });
        const name = (asked.value ?? '').trim();
        if (!asked.button.accept || !name) {
          return;
        }
        try {
          const version = await registerBest(model.api, id, name);
          Notification.success(`Registered ${version.ref}`, {
            autoClose: 5000,
            actions: [
              {
                label: 'Show in Models',
                callback: () => void commands.execute('kfjupyter:show-model', { model: version.model })
              }
            ]
          });
          return version;
        } catch (error) {
          await showErrorMessage('Cannot register the best trial’s model', error as Error);
        }
      }
    });
    if (palette) {
      for (const command of [TuningCommandIDs.show, TuningCommandIDs.refresh]) {
        palette.addItem({ command, category: 'Kubeflow' });
      }
    }
    model.start();
  }
};
