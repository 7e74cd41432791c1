"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, "Matching Networks
for One Shot Learning"), without full context embeddings (FCE).

A query's class distribution is an attention-weighted vote of the support labels, the attention a
softmax over the cosine similarities between the query and each support embedding (the paper's
choice; set `algorithm.distance: cosine` in the config, `euclidean` uses negative squared distances).
Trained by the negative log-likelihood of the query labels. `algorithm.metric_scale` multiplies the
similarities first: cosines lie in [-1, 1] (in [0, 1] for a ReLU embedding), so unscaled the attention is
close to uniform over the support set and the loss cannot fall far, which slows learning.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from meta_dist.algorithms.metric import MetricAlgorithm

LOG_EPS = 1e-8


class MatchingNet(MetricAlgorithm):
    def scores(self, params, support, support_y, query, ways):
        """Log-probabilities [T, Nq, ways] (cross-entropy of these is exactly the NLL)."""
        attention = self.similarity(query, support).softmax(-1)  # [T, Nq, Ns]
        probs = torch.bmm(attention, F.one_hot(support_y, ways).to(attention.dtype))
        return torch.log(probs + LOG_EPS)
