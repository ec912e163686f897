"""Chapter 1 (contrastive losses): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch``, ``F`` (``torch.nn.functional``) and ``math`` are in scope. The visible checks
of ``solutions/ch01/ch01_exercises.ipynb`` carry these outputs on fixed inputs, so each
hint is printed when its mistake is made; the hidden tests fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import Mistake, answers

_cos = answers("cosine_similarity_matrix", "a, b")
_nce = answers("info_nce_loss", "queries, keys, temperature")
_ntx = answers("nt_xent_loss", "z1, z2, temperature")
_au = answers("alignment_uniformity", "z1, z2, t=2.0")


COSINE = [
    _cos("no_normalisation", "you forgot to L2-normalise", "return a @ b.T"),
    _cos("normalise_only_a", "normalise b as well as a", "return F.normalize(a, dim=1) @ b.T"),
    _cos(
        "normalise_columns",
        "normalise each row (dim=1), not each column (dim=0)",
        "return F.normalize(a, dim=0) @ F.normalize(b, dim=0).T",
    ),
    _cos(
        "whole_matrix_norm",
        "divide by the norm of each row, not by the norm of the whole matrix",
        "return (a @ b.T) / (a.norm() * b.norm())",
    ),
    _cos(
        "squared_norms",
        "divide by the norms, not by the squared norms",
        "return (a @ b.T) / (a.pow(2).sum(dim=1, keepdim=True) * b.pow(2).sum(dim=1))",
    ),
    _cos(
        "cosine_distance",
        "return the cosine similarity, not the cosine distance 1 - cos",
        "return 1 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T",
    ),
    _cos(
        "transposed",
        "rows follow a and columns follow b",
        "return F.normalize(b, dim=1) @ F.normalize(a, dim=1).T",
    ),
]

_NCE_SIMS = """\
q = F.normalize(queries, dim=1)
k = F.normalize(keys, dim=1)
targets = torch.arange(len(q), device=q.device)
"""

INFO_NCE = [
    _nce(
        "no_normalisation",
        "the logits are cosine similarities: L2-normalise the queries and keys first",
        """
logits = queries @ keys.T / temperature
return F.cross_entropy(logits, torch.arange(len(queries)))
""",
    ),
    _nce(
        "temperature_multiplied",
        "divide the similarities by the temperature, do not multiply",
        _NCE_SIMS + "return F.cross_entropy(q @ k.T * temperature, targets)",
    ),
    _nce(
        "softmax_over_queries",
        "each row is one query: the softmax runs over the keys (dim=1)",
        _NCE_SIMS + "return F.cross_entropy((q @ k.T / temperature).T, targets)",
    ),
    _nce(
        "sum_not_mean",
        "average over the queries (mean), do not sum",
        _NCE_SIMS + 'return F.cross_entropy(q @ k.T / temperature, targets, reduction="sum")',
    ),
    _nce(
        "positive_at_zero",
        "the positive of query i is key i: the targets are torch.arange(N)",
        _NCE_SIMS + "return F.cross_entropy(q @ k.T / temperature, torch.zeros_like(targets))",
    ),
    _nce(
        "both_directions",
        "one direction only here (queries to keys)",
        _NCE_SIMS
        + """\
logits = q @ k.T / temperature
return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2""",
    ),
    _nce(
        "double_softmax",
        "F.cross_entropy applies log-softmax itself: pass it the raw logits",
        _NCE_SIMS + "return F.cross_entropy((q @ k.T / temperature).softmax(dim=1), targets)",
    ),
    _nce(
        "positive_not_in_denominator",
        "keep the positive in the denominator",
        _NCE_SIMS
        + """\
logits = q @ k.T / temperature
negatives = logits.masked_fill(torch.eye(len(q), dtype=torch.bool), float("-inf"))
return (torch.logsumexp(negatives, dim=1) - logits.diagonal()).mean()""",
    ),
]

_NTX_SIMS = """\
n = len(z1)
z = F.normalize(torch.cat([z1, z2]), dim=1)
sims = z @ z.T / temperature
targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
self_mask = torch.eye(2 * n, dtype=torch.bool)
"""

NT_XENT = [
    _ntx(
        "self_not_masked",
        "mask the self-similarity",
        _NTX_SIMS + "return F.cross_entropy(sims, targets)",
    ),
    _ntx(
        "self_zeroed",
        "mask the diagonal with -inf, not 0",
        _NTX_SIMS + "return F.cross_entropy(sims.masked_fill(self_mask, 0.0), targets)",
    ),
    _ntx(
        "temperature_multiplied",
        "divide the similarities by the temperature, do not multiply",
        """
n = len(z1)
z = F.normalize(torch.cat([z1, z2]), dim=1)
sims = (z @ z.T * temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
return F.cross_entropy(sims, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
""",
    ),
    _ntx(
        "no_normalisation",
        "the logits are cosine similarities: L2-normalise the embeddings first",
        """
n = len(z1)
z = torch.cat([z1, z2])
sims = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
return F.cross_entropy(sims, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
""",
    ),
    _ntx(
        "positive_is_self",
        "positive of view i is view i + N",
        _NTX_SIMS
        + 'return F.cross_entropy(sims.masked_fill(self_mask, float("-inf")), torch.arange(2 * n))',
    ),
    _ntx(
        "cross_view_negatives_only",
        "negatives come from both views: build the 2N x 2N similarity matrix",
        """
a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
logits = a @ b.T / temperature
targets = torch.arange(len(a))
return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
""",
    ),
    _ntx(
        "first_half_anchors_only",
        "use all 2N views as anchors",
        _NTX_SIMS
        + 'return F.cross_entropy(sims.masked_fill(self_mask, float("-inf"))[:n], targets[:n])',
    ),
    _ntx(
        "sum_not_mean",
        "average over the 2N anchors (mean), do not sum",
        _NTX_SIMS
        + 'return F.cross_entropy(sims.masked_fill(self_mask, float("-inf")), targets, reduction="sum")',
    ),
]

_AU_START = """\
x, y = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
n = len(x)
off_diagonal = ~torch.eye(n, dtype=torch.bool)
"""
_AU_ALIGN = "alignment = (x - y).pow(2).sum(dim=1).mean()\n"
_AU_UNIF = "uniformity = torch.exp(-t * torch.cdist(x, x).pow(2))[off_diagonal].mean().log()\n"

ALIGNMENT_UNIFORMITY = [
    _au(
        "no_normalisation",
        "L2-normalise z1 and z2 first",
        """
off_diagonal = ~torch.eye(len(z1), dtype=torch.bool)
alignment = (z1 - z2).pow(2).sum(dim=1).mean()
uniformity = torch.exp(-t * torch.cdist(z1, z1).pow(2))[off_diagonal].mean().log()
return alignment, uniformity
""",
    ),
    _au(
        "alignment_not_squared",
        "alignment averages squared distances",
        _AU_START
        + "alignment = (x - y).norm(dim=1).mean()\n"
        + _AU_UNIF
        + "return alignment, uniformity",
    ),
    _au(
        "alignment_sum",
        "alignment is a mean over the N pairs, not a sum",
        _AU_START
        + "alignment = (x - y).pow(2).sum()\n"
        + _AU_UNIF
        + "return alignment, uniformity",
    ),
    _au(
        "uniformity_includes_self_pairs",
        "leave out the i = j pairs",
        _AU_START
        + _AU_ALIGN
        + "uniformity = torch.exp(-t * torch.cdist(x, x).pow(2)).mean().log()\n"
        "return alignment, uniformity",
    ),
    _au(
        "uniformity_log_of_sum",
        "the log of the mean, not of the sum",
        _AU_START
        + _AU_ALIGN
        + "uniformity = torch.exp(-t * torch.cdist(x, x).pow(2))[off_diagonal].sum().log()\n"
        "return alignment, uniformity",
    ),
    _au(
        "uniformity_mean_of_log",
        "average exp(-t d^2) first, then take the log",
        _AU_START
        + _AU_ALIGN
        + "uniformity = (-t * torch.cdist(x, x).pow(2))[off_diagonal].mean()\n"
        "return alignment, uniformity",
    ),
    _au(
        "uniformity_uses_z2",
        "uniformity compares z1 with itself",
        _AU_START
        + _AU_ALIGN
        + "uniformity = torch.exp(-t * torch.cdist(x, y).pow(2))[off_diagonal].mean().log()\n"
        "return alignment, uniformity",
    ),
    _au(
        "uniformity_not_squared",
        "uniformity uses squared distances too",
        _AU_START
        + _AU_ALIGN
        + "uniformity = torch.exp(-t * torch.cdist(x, x))[off_diagonal].mean().log()\n"
        "return alignment, uniformity",
    ),
]

#: Item 6 of issue 7: what a loss is for. Both give the right value on the visible float32
#: inputs; the hidden tests' ``grading.expect_loss_contract`` catches them.
INFO_NCE_CONTRACT = [
    _nce(
        "keys_detached",
        "no gradient reaches keys",
        """
q = F.normalize(queries, dim=1)
k = F.normalize(keys.detach(), dim=1)
logits = q @ k.T / temperature
return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))
""",
    ),
    _nce(
        "float32_cast",
        "float64 inputs must give a float64 loss",
        """
q = F.normalize(queries.float(), dim=1)
k = F.normalize(keys.float(), dim=1)
logits = q @ k.T / temperature
return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))
""",
    ),
]

NT_XENT_CONTRACT = [
    _ntx(
        "second_view_detached",
        "no gradient reaches z2",
        """
n = len(z1)
z = F.normalize(torch.cat([z1, z2.detach()]), dim=1)
logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
return F.cross_entropy(logits, targets)
""",
    ),
    _ntx(
        "float32_cast",
        "float64 inputs must give a float64 loss",
        """
n = len(z1)
z = F.normalize(torch.cat([z1, z2]).to(torch.float32), dim=1)
logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
return F.cross_entropy(logits, targets)
""",
    ),
]

MISTAKES: list[Mistake] = COSINE + INFO_NCE + NT_XENT + ALIGNMENT_UNIFORMITY + INFO_NCE_CONTRACT + NT_XENT_CONTRACT
