"""Published and measured reference figures printed next to our own (source in each string;
see docs/results.md)."""
from __future__ import annotations

from meta_dist.config import Config

_REFERENCES = {
    ("sinusoid", "maml"): "MAML K=10 MSE after 0/1/10 steps: 3.13 / 0.443 / 0.143 at 20k meta-steps (a "
                          "reproduction of Finn et al. 2017's setup)",
    ("sinusoid", "fomaml"): "first-order MAML: slightly above second-order's 0.443 after 1 step (Finn et al. "
                            "2017, Sec. 5.2)",
    ("sinusoid", "reptile"): "Reptile sinusoid: the paper gives only figures (Nichol et al. 2018)",
    ("omniglot", "maml"): "Omniglot 5-way 1-shot: MAML 98.7 +- 0.4% (Finn et al. 2017, Table 1)",
    ("omniglot", "fomaml"): "Omniglot 5-way 1-shot: first-order MAML 98.3 +- 0.5% (Nichol et al. 2018)",
    ("omniglot", "reptile"): "Omniglot 5-way 1-shot: Reptile 95.39 +- 0.09%, transductive 97.68% (Nichol et al. 2018)",
    ("omniglot", "protonet"): "Omniglot 5-way 1-shot: Prototypical Networks 98.8% (Snell et al. 2017)",
    ("omniglot", "matchingnet"): "Omniglot 5-way 1-shot: Matching Networks 98.1% (Vinyals et al. 2016)",
    ("omniglot", "siamese"): "Omniglot 5-way 1-shot: Siamese nets 97.3% (Koch 2015, as quoted by Finn et al. 2017)",
    ("omniglot", "metasgd"): "Omniglot 5-way 1-shot: Meta-SGD 99.53 +- 0.26% (Li et al. 2017)",
    ("omniglot", "anil"): "Omniglot 20-way 1-shot: ANIL 96.2 +- 0.5% (Raghu et al. 2020)",
    ("navigation2d", "maml_rl"): "2D navigation return after 0/1/2/3 steps: MAML -40.4 / -11.7 +- 2.2 / -3.3 / -3.2 "
                                 "(Finn et al. 2017, Sec. 5.3)",
    ("cheetah_vel", "maml_rl"): "Half-cheetah goal velocity return after 0/1/2/3 steps: MAML -129.5 / -78.6 / -66.6 / "
                                "-60.8, oracle -54.5 (Finn et al. 2017, Sec. 5.3)",
    ("cheetah_dir", "maml_rl"): "Half-cheetah direction return after 0/1/2/3 steps: MAML -50.7 / 293 / 313 / 316, "
                                "oracle 443 (Finn et al. 2017, Sec. 5.3)",
    ("bandits", "rl2"): "Bernoulli bandits, 10 pulls, 5 arms: RL^2 6.7, Gittins 6.6, random 5.0 (Duan et al. 2016)",
    ("metaworld_ml1", "rl2"): "no ML1 figure quoted (Yu et al. report ML10 and ML45)",
    ("metaworld_ml1", "maml_rl"): "no ML1 figure quoted (Yu et al. report ML10 and ML45)",
    ("metaworld_ml10", "rl2"): "ML10 success, meta-test / meta-train: RL^2 35.8% / 86.9% (Yu et al.)",
    ("metaworld_ml10", "maml_rl"): "ML10 success, meta-test / meta-train: MAML 31.6% / 44.4% (Yu et al.)",
    ("metaworld_ml45", "rl2"): "ML45 success, meta-test / meta-train: RL^2 33.3% / 70% (Yu et al.)",
}
# Omniglot's 20-way 1-shot episodes within one evaluation alphabet (Lake et al.'s background split), for any
# algorithm evaluated that way (eval.within_alphabet).
WITHIN_ALPHABET = ("Omniglot 20-way 1-shot within an evaluation alphabet: humans 95.5% (Lake et al. 2015), "
                   "siamese nets 92.0% (Koch et al. 2015)")


def reference_for(config: Config) -> str:
    if config.eval.within_alphabet and config.task.name == "omniglot":
        return WITHIN_ALPHABET
    return _REFERENCES.get((config.task.name, config.algorithm.name), "")
