"""Writes notebooks/quickstart.ipynb (kept as code so its cells are reviewed as code)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# kfjupyter quickstart\n\n"
        "Train a small model as **two real `torch.distributed` ranks** from one cell, on the "
        "local backend (this machine). The same cell runs on Kubeflow with `--backend kubernetes`."
    ),
    new_code_cell("%load_ext kfjupyter"),
    new_markdown_cell("Data, a model factory and settings live in the notebook as usual."),
    new_code_cell(
        "import torch\n"
        "\n"
        "torch.manual_seed(0)\n"
        "X = torch.randn(512, 8)\n"
        "true_w = torch.randn(8, 1)\n"
        "y = X @ true_w + 0.05 * torch.randn(512, 1)\n"
        "epochs = 60\n"
        "\n"
        "\n"
        "def make_model():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))"
    ),
    new_markdown_cell(
        "`%%kf_train` sends the cell, with what it uses from the notebook (`make_model`, `X`, `y`, "
        "`epochs`), to two ranks. Each rank trains on its own half of the data; "
        "DistributedDataParallel averages the gradients."
    ),
    new_code_cell(
        "%%kf_train --workers 2 --name quickstart --out job\n"
        "import torch, torch.distributed as dist\n"
        "dist.init_process_group()                      # gloo on CPU; RANK, WORLD_SIZE … are set\n"
        "rank, world = dist.get_rank(), dist.get_world_size()\n"
        "model = torch.nn.parallel.DistributedDataParallel(make_model())\n"
        "opt = torch.optim.Adam(model.parameters(), lr=0.02)\n"
        "Xs, ys = X[rank::world], y[rank::world]         # this rank's shard\n"
        "for step in range(epochs):\n"
        "    loss = torch.nn.functional.mse_loss(model(Xs), ys)\n"
        "    opt.zero_grad()\n"
        "    loss.backward()\n"
        "    opt.step()\n"
        "    kfjupyter.report(step=step, loss=loss.item())\n"
        "    if step % 20 == 0:\n"
        "        print(f'rank {rank} step {step} loss {loss.item():.4f}')\n"
        "if rank == 0:\n"
        "    torch.save(model.module.state_dict(), kfjupyter.output_dir() / 'model.pt')\n"
        "dist.destroy_process_group()"
    ),
    new_markdown_cell("The job handle gives the status, metrics, logs and outputs — also after a kernel restart (`kfjupyter.jobs.get(id)`)."),
    new_code_cell(
        "model = make_model()\n"
        "model.load_state_dict(torch.load(job.outputs['model.pt']))\n"
        "mse = torch.nn.functional.mse_loss(model(X), y).item()\n"
        "first, last = job.metrics(rank=0)[0]['loss'], job.metrics(rank=0)[-1]['loss']\n"
        "print(f'job {job.id}: {job.status} in {job.duration():.1f} s on {job.workers} ranks')\n"
        "print(f'loss {first:.4f} -> {last:.4f}; MSE of the trained model on all data: {mse:.4f}')\n"
        "print('model file:', job.outputs['model.pt'])\n"
        "print('rank logs: ', job.job_dir / 'logs')\n"
        "assert job.status == 'Succeeded' and last < first"
    ),
    new_markdown_cell(
        "## Register the model\n\n"
        "The model registry keeps versions with their metrics and lineage (this job, this notebook). "
        "Aliases such as `production` point at versions, and every move is kept in a history."
    ),
    new_code_cell(
        "version = job.register_model('quickstart-regressor', aliases='staging', description='MLP regressor from the quickstart')\n"
        "print(version.ref, version.framework, version.aliases)"
    ),
    new_code_cell(
        "kfjupyter.registry.set_alias('quickstart-regressor', 'production', version.number, reason='passed the quickstart check')\n"
        "restored = make_model()\n"
        "restored.load_state_dict(kfjupyter.load_model('quickstart-regressor@production'))\n"
        "assert torch.allclose(restored(X), model(X))\n"
        "print('loaded quickstart-regressor@production from the registry')"
    ),
    new_markdown_cell(
        "## Serve it\n\n"
        "`kfjupyter.deploy` starts a KServe model server on 127.0.0.1 for the `production` version "
        "(KServe's V1 and V2 protocols; an `InferenceService` with `backend='kubernetes'`)."
    ),
    new_code_cell(
        "endpoint = kfjupyter.deploy('quickstart-regressor@production', name='quickstart', model_class=make_model)\n"
        "answer = endpoint.predict(X[:3].tolist())\n"
        "print('endpoint', endpoint.url, endpoint.status, '-> predictions', torch.tensor(answer).flatten().tolist())\n"
        "assert torch.allclose(torch.tensor(answer).flatten(), model(X[:3]).flatten().detach())\n"
        "endpoint.undeploy()"
    ),
    new_markdown_cell(
        "## Tune it\n\n"
        "`%%kf_tune` runs a real Optuna study (Katib on Kubernetes): the search space is declared where it is "
        "used with `kfjupyter.param`, trials run two at a time in long-lived workers, and median stopping prunes "
        "the trials that fall behind."
    ),
    new_code_cell(
        "%%kf_tune --objective val_loss --direction minimize --trials 8 --parallel 2 --algorithm tpe --early-stopping median --name quicktune --out best\n"
        "lr     = kfjupyter.param('lr', low=1e-3, high=1e-1, log=True)\n"
        "hidden = kfjupyter.param('hidden', choices=[8, 32])\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))\n"
        "opt = torch.optim.Adam(model.parameters(), lr=lr)\n"
        "Xt, yt, Xv, yv = X[:384], y[:384], X[384:], y[384:]\n"
        "for epoch in range(30):\n"
        "    loss = torch.nn.functional.mse_loss(model(Xt), yt)\n"
        "    opt.zero_grad()\n"
        "    loss.backward()\n"
        "    opt.step()\n"
        "    kfjupyter.report(step=epoch, val_loss=torch.nn.functional.mse_loss(model(Xv), yv).item())"
    ),
    new_code_cell(
        "print('best parameters:', best)\n"
        "assert set(best) == {'lr', 'hidden'}"
    ),
    new_markdown_cell(
        "## Cells as pipeline steps\n\n"
        "`pipeline_demo.ipynb` tags its cells the way Kale does (`imports`, `pipeline-parameters`, "
        "`step:prepare`, `step:train-logreg` …). kfjupyter reads the tags, infers which values flow "
        "between the steps, and runs the steps as separate processes, the two training steps in parallel. "
        "The same pipeline compiles to Kubeflow Pipelines v2 (`kfjupyter.pipelines.compile_kfp`)."
    ),
    new_code_cell(
        "pipeline = kfjupyter.pipelines.from_notebook('pipeline_demo.ipynb')\n"
        "display(pipeline)                               # the DAG\n"
        "for e in pipeline.edges:\n"
        "    print(f'{e.source} -> {e.target}: {\", \".join(e.names)}')"
    ),
    new_code_cell(
        "run = kfjupyter.run_pipeline(pipeline, {'C': 0.5}, wait=True)\n"
        "print(f'pipeline run {run.id}: {run.status}', run.pipeline_metrics())\n"
        "assert run.status == 'Succeeded' and run.pipeline_metrics()['logreg_accuracy'] > 0.8"
    ),
    new_markdown_cell("Run it again: nothing changed, so every step comes from the step cache, and the run says why."),
    new_code_cell(
        "again = kfjupyter.run_pipeline(pipeline, {'C': 0.5}, wait=True)\n"
        "for step in again.steps:\n"
        "    print(f\"{step['name']:14} {step['status']:10} {step['cache_reason']}\")\n"
        "assert all(step['cached'] for step in again.steps)"
    ),
]


def main() -> None:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
    nbformat.write(nb, path)
    print(path)


if __name__ == "__main__":
    main()
