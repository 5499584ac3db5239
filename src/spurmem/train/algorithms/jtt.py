"""Just Train Twice (Liu et al. 2021; docs/method.md §7).

Stage 1 is a short ERM run: the checkpoint of an existing ERM run at epoch T (every run keeps one
checkpoint per epoch, so stage 1 costs nothing extra when the ERM baseline has been trained). Its
*error set* is the training examples it misclassifies. Stage 2 trains a fresh model in which the
error set is upweighted: each error is drawn ``lambda_up`` times as often as a correctly classified
example (or, with ``mode=loss``, its loss counts ``lambda_up`` times). Group labels are not used
for training (only for model selection, as in the paper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from spurmem.config import ConfigError
from spurmem.data.batches import Batch
from spurmem.data.schema import GroupDataset
from spurmem.metrics import predict
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.params import AlgorithmParams, parse_params


class JTTParams(AlgorithmParams):
    identification_run: str | None = Field(None, description="run dir of the stage-1 ERM model")
    identification_epoch: int | Literal["selected", "last"] = Field(
        1, description="epoch T of the stage-1 run whose training errors are upweighted"
    )
    lambda_up: float = Field(20.0, ge=1.0, description="weight of an error-set example relative to 1")
    mode: Literal["sample", "loss"] = "sample"


def error_set(model: torch.nn.Module, dataset: GroupDataset, device: torch.device | str = "auto") -> torch.Tensor:
    """Bool per training example (dataset order): True where ``model`` misclassifies it."""
    pred = predict(model, dataset, "train", device=device)
    wrong = torch.zeros(len(dataset["train"]), dtype=torch.bool)
    idx = {id_: i for i, id_ in enumerate(dataset["train"].ids)}
    for id_, ok in zip(pred.ids, pred.correct):
        wrong[idx[id_]] = not ok
    return wrong


def upweighted(errors: torch.Tensor, lambda_up: float) -> torch.Tensor:
    """Example weights: ``lambda_up`` for the error set, 1 for the rest."""
    return torch.where(errors, torch.tensor(float(lambda_up)), torch.tensor(1.0)).double()


class JTT(Algorithm):
    """Retrain with stage 1's training errors upweighted."""

    name = "jtt"
    group_labels = "none"
    labels_note = "training class labels and stage 1's errors (no group labels)"
    Params = JTTParams

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(JTTParams, hparams, self.name)
        self.errors: torch.Tensor | None = None
        self._weights_dev: torch.Tensor | None = None
        self._errors_dev: tuple[torch.Tensor, torch.Tensor] | None = None  # (the error set, it on the device)

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        if self.errors is None:
            self.errors = self.identify(device)
        w = upweighted(self.errors, self.params.lambda_up)
        self._weights_dev = (w / w.mean()).float().to(device)  # example weights averaging 1 over the data

    def identify(self, device: torch.device) -> torch.Tensor:
        """Load stage 1 and return its error set."""
        from spurmem.train.run import load_run  # the shared loop's run loader

        run = self.params.identification_run
        if not run:
            raise ConfigError(
                "algorithm 'jtt' needs algorithm_params.identification_run: the run dir of an ERM run "
                "(train one with `spurmem train algorithm=erm`; stage 1 is its checkpoint at identification_epoch)"
            )
        if not Path(run).is_dir():
            raise ConfigError(f"algorithm 'jtt': identification_run {run!r} is not a run directory")
        loaded = load_run(run, epoch=self.params.identification_epoch)
        if loaded.dataset["train"].ids != self.dataset["train"].ids:
            raise ConfigError(f"algorithm 'jtt': identification_run {run!r} was trained on different training data")
        loaded.model.to(device)
        return error_set(loaded.model, self.dataset, device)

    def sample_weights(self) -> torch.Tensor | None:
        if self.params.mode != "sample":
            return None
        assert self.errors is not None, "setup() first"
        return upweighted(self.errors, self.params.lambda_up)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.errors is not None and self._weights_dev is not None, "setup() first"
        if self._errors_dev is None or self._errors_dev[0] is not self.errors:  # copied once, not every step
            self._errors_dev = (self.errors, self.errors.to(batch.index.device))
        in_errors = self._errors_dev[1][batch.index]
        terms = {"error_set_share": in_errors.float().mean()}
        if self.params.mode == "sample":
            loss, base = super().loss(model, batch)
            return loss, {**base, **terms}
        losses = F.cross_entropy(model(batch.x), batch.y, reduction="none")
        w = self._weights_dev[batch.index.to(self._weights_dev.device)]
        loss = (w * losses).mean()
        return loss, {"weighted_ce": loss.detach(), "ce": losses.detach().mean(), **terms}

    def describe(self) -> dict[str, Any]:
        """Size and group make-up of the error set, for run.json."""
        if self.errors is None:
            return {}
        groups = self.dataset["train"].group[self.errors]
        counts = torch.bincount(groups, minlength=self.dataset.n_groups).tolist()
        return {"error_set_size": int(self.errors.sum()), "error_set_by_group": counts,
                "identification_run": self.params.identification_run,
                "identification_epoch": self.params.identification_epoch, "lambda_up": self.params.lambda_up}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.errors is None else {"error_set": self.errors.to(torch.uint8).cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "error_set" in state:
            self.errors = state["error_set"].bool()
