"""LanguageModel over a Hugging Face transformers causal LM in torch."""

from __future__ import annotations

import torch

from auditq.backends.base import LanguageModel, TokenScores


class TorchCausalLM(LanguageModel):
    """Batched scoring (right padding) and batched greedy generation (left padding, KV cache)."""

    def __init__(self, model, pad_token_id: int, eos_token_id: int | None, batch_size: int = 16,
                 description: str = "torch") -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.batch_size = batch_size
        self.description = description

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def score(self, sequences: list[list[int]]) -> list[TokenScores]:
        out: list[TokenScores] = []
        for start in range(0, len(sequences), self.batch_size):
            batch = sequences[start:start + self.batch_size]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[row, : len(seq)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1)[:, :-1]
            probs = logp.exp()
            mean = (probs * logp).sum(-1)
            var = (probs * logp.square()).sum(-1) - mean.square()
            std = var.clamp_min(0).sqrt()
            target = ids[:, 1:].to(self.device)
            token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            for row, seq in enumerate(batch):
                n = len(seq) - 1
                out.append(TokenScores(
                    logprobs=token_logp[row, :n].double().cpu().numpy(),
                    mean_logp=mean[row, :n].double().cpu().numpy(),
                    std_logp=std[row, :n].double().cpu().numpy(),
                ))
        return out

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        results: list[list[int]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start:start + self.batch_size]
            width = max(len(p) for p in batch)
            ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, prompt in enumerate(batch):
                ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
                mask[row, width - len(prompt):] = 1
            generated = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                use_cache=True,
                pad_token_id=self.pad_token_id,
                eos_token_id=self.eos_token_id,
            )
            for row in range(len(batch)):
                new = generated[row, width:].tolist()
                if self.eos_token_id is not None and self.eos_token_id in new:
                    new = new[: new.index(self.eos_token_id)]
                while new and new[-1] == self.pad_token_id:
                    new.pop()
                results.append(new)
        return results
