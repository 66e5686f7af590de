"""``GSPOTrainer``: GRPOTrainer with GSPO's sequence-level ratio, plus GSPO-token for per-token advantages.

* Per-sequence advantages, shape (B,) (what GRPOTrainer produces): TRL 1.16's ``importance_sampling_level="sequence"``
  path is used unchanged; it already logs ``clip_ratio/*`` once per sequence.
* Per-token advantages, shape (B, T) (subclasses with GAE or token-level shaping): GSPO-token (arXiv 2507.18071,
  Eq. 13), ``s_i,t = sg[s_i] * pi(y_t) / sg[pi(y_t)]``. TRL's stock sequence path would instead multiply the sequence
  ratio (whose gradient is spread over all tokens of the sequence) with each token's advantage.

GSPO-token without copying TRL's loss: during the loss call the ratio level is switched to "token" and, right after
the policy forward, ``old_per_token_logps`` in the (copied) inputs is replaced by ``sg[logp] - sg[log s_i]``. TRL then
computes ``logp - old = log s_i + logp - sg[logp]``, which is exactly the GSPO-token log weight, and applies its own
clip, aggregation, KL and metrics to it. Only the token-weighted ``clip_ratio/{low,high,region}_mean`` values are
replaced by per-sequence means.
"""

from __future__ import annotations

import torch
from trl import GRPOTrainer

from trl_ext.core.gspo import gspo_token_log_ratio, sequence_clip_fractions, sequence_log_ratio
from trl_ext.trainers.common import loss_mask


class GSPOTrainer(GRPOTrainer):
    """GRPOTrainer for GSPO; use with :class:`trl_ext.GSPOConfig` (a plain ``GRPOConfig`` works too).

    Subclasses that produce per-token advantages of shape (B, T) in ``inputs["advantages"]`` get GSPO-token
    automatically; per-sequence advantages of shape (B,) get GSPO.
    """

    _gspo_token_inputs = None  # set only inside _compute_loss on the GSPO-token path

    def _compute_loss(self, model, inputs):
        if inputs["advantages"].dim() != 2 or self.importance_sampling_level != "sequence":
            return super()._compute_loss(model, inputs)
        # Copy so that the buffered rollout minibatch keeps its real old log-probs for later iterations.
        inputs = dict(inputs)
        if self.off_policy_mask_threshold is not None and "sampling_per_token_logps" not in inputs:
            # TRL's off-policy mask falls back to old_per_token_logps, which is rewritten below: keep the real one.
            old = inputs.get("old_per_token_logps")
            if old is not None:
                inputs["sampling_per_token_logps"] = old
        self._gspo_token_inputs = inputs
        self.importance_sampling_level = "token"
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self.importance_sampling_level = "sequence"
            self._gspo_token_inputs = None
        self._log_sequence_clip_fractions(inputs)
        return loss

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        outputs = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inputs = self._gspo_token_inputs
        if inputs is not None:
            # The first call inside _compute_loss is the policy forward; later calls (if any) are left alone.
            self._gspo_token_inputs = None
            logp = outputs[0]
            mask = loss_mask(inputs)
            old = inputs.get("old_per_token_logps")
            old = logp.detach() if old is None else old
            log_weights = gspo_token_log_ratio(logp, old, mask)
            inputs["_gspo_seq_log_ratio"] = sequence_log_ratio(logp.detach(), old, mask)
            # TRL computes logp - old_per_token_logps: make that equal to the GSPO-token log weight.
            inputs["old_per_token_logps"] = (logp - log_weights).detach()
        return outputs

    def _log_sequence_clip_fractions(self, inputs):
        if self.loss_type not in ("grpo", "bnpo", "dr_grpo", "dapo", "luspo"):
            return  # TRL logs no clip ratios for the other loss types
        mode = "train" if self.model.training else "eval"
        mask = loss_mask(inputs)
        low, high = sequence_clip_fractions(
            inputs["_gspo_seq_log_ratio"], inputs["advantages"], mask, self.epsilon_low, self.epsilon_high
        )
        valid = (mask.sum(-1) > 0).to(low.dtype)  # sequences without loss tokens are not counted
        local = torch.stack([(low * valid).sum(), (high * valid).sum(), ((low + high) * valid).sum(), valid.sum()])
        totals = self.accelerator.reduce(local.float(), reduction="sum")
        count = totals[3].clamp(min=1.0)
        for i, side in enumerate(("low", "high", "region")):
            values = self._metrics[mode][f"clip_ratio/{side}_mean"]
            value = (totals[i] / count).item()
            if values:
                values[-1] = value  # replace TRL's token-weighted value of this call
            else:
                values.append(value)
