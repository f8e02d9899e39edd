"""Distributed training: ``kfjupyter.train`` and its backends."""
