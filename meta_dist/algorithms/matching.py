"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, "Matching Networks
for One Shot Learning"), without full context embeddings (FCE).

A query's class distribution is an attention-weighted vote of the support labels, the attention a
softmax over the cosine similarities between the query and each support embedding (the paper's
choice; set `algorithm.distance: cosine` in the config, `euclidean` uses negative squared distances).
Trained by the negative log-likelihood of the query labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from meta_dist.algorithms.metric import MetricAlgorithm, similarity

LOG_EPS = 1e-8


class MatchingNet(MetricAlgorithm):
    def scores(self, params, support, support_y, query, ways):
        """Log-probabilities [T, Nq, ways] (cross-entropy of these is exactly the NLL)."""
        attention = similarity(self.cfg.distance, query, support).softmax(-1)  # [T, Nq, Ns]
        probs = torch.bmm(attention, F.one_hot(support_y, ways).to(attention.dtype))
        return torch.log(probs + LOG_EPS)
