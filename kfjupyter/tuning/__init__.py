"""Hyperparameter tuning: ``kfjupyter.tune``, ``kfjupyter.param`` and the :class:`Study` handle.

Locally a study is a real Optuna study run by long-lived trial workers under a detached
supervisor (:mod:`.local`, :mod:`.supervisor`, :mod:`.worker`); on Kubernetes it is a Katib
``Experiment`` (:mod:`.kubernetes`, :mod:`.katib`). Both read the same search space
(:mod:`.space`) and show the same :class:`~.study.Study` view.
"""
