"""Chapter 2 (building CLIP): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch``, ``F`` (``torch.nn.functional``), ``nn``, ``math`` and ``copy`` are in scope, and
the other graded functions are the solution's. The visible checks of
``solutions/ch02/ch02_exercises.ipynb`` carry these outputs on fixed inputs, so each hint
is printed when its mistake is made; the hidden tests fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import answers

_pool = answers("masked_mean_pool", "hidden_states, attention_mask")
_logits = answers("clip_logits", "image_features, text_features, logit_scale")
_loss = answers("clip_loss", "logits_per_image")
_step = answers("train_step", "model, images, input_ids, attention_mask, optimizer")


POOL = [
    _pool("mask_ignored", "the padding positions are averaged in", "return hidden_states.mean(dim=1)"),
    _pool(
        "divide_by_padded_length",
        "not by the padded length T",
        """
mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
return (hidden_states * mask).sum(dim=1) / hidden_states.shape[1]
""",
    ),
    _pool(
        "sum_not_mean",
        "you summed the real tokens",
        """
mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
return (hidden_states * mask).sum(dim=1)
""",
    ),
    _pool("first_token_only", "not only the first ([CLS]) token", "return hidden_states[:, 0]"),
    _pool("last_position", "the last position is padding for short captions", "return hidden_states[:, -1]"),
    _pool(
        "batch_token_count",
        "not of the whole batch",
        """
mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
return (hidden_states * mask).sum(dim=1) / mask.sum()
""",
    ),
    _pool(
        "no_zero_guard",
        "clamp the count",
        """
mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1)
""",
    ),
    _pool(
        "mean_over_features",
        "average over the tokens (dim=1)",
        """
mask = attention_mask.to(hidden_states.dtype)
return (hidden_states.mean(dim=2) * mask) / mask.sum(dim=1, keepdim=True).clamp(min=1)
""",
    ),
]

LOGITS = [
    _logits(
        "no_normalisation",
        "L2-normalise both feature sets",
        """
scale = logit_scale.exp().clamp(max=100)
logits = scale * image_features @ text_features.T
return logits, logits.T
""",
    ),
    _logits(
        "normalise_image_only",
        "normalise the text features too",
        """
scale = logit_scale.exp().clamp(max=100)
logits = scale * F.normalize(image_features, dim=-1) @ text_features.T
return logits, logits.T
""",
    ),
    _logits(
        "normalise_text_only",
        "normalise the image features too",
        """
scale = logit_scale.exp().clamp(max=100)
logits = scale * image_features @ F.normalize(text_features, dim=-1).T
return logits, logits.T
""",
    ),
    _logits(
        "no_exp",
        "logit_scale holds the log of the scale",
        """
logits = logit_scale.clamp(max=100) * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
return logits, logits.T
""",
    ),
    _logits(
        "no_clamp",
        "clamp the scale, logit_scale.exp(), at 100",
        """
logits = logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
return logits, logits.T
""",
    ),
    _logits(
        "clamp_the_log",
        "(not the log value)",
        """
scale = logit_scale.clamp(max=100).exp()
logits = scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
return logits, logits.T
""",
    ),
    _logits(
        "divide_by_scale",
        "do not divide",
        """
scale = logit_scale.exp().clamp(max=100)
logits = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T / scale
return logits, logits.T
""",
    ),
    _logits(
        "normalise_columns",
        "normalise each row (dim=-1)",
        """
scale = logit_scale.exp().clamp(max=100)
logits = scale * F.normalize(image_features, dim=0) @ F.normalize(text_features, dim=0).T
return logits, logits.T
""",
    ),
    _logits(
        "no_transpose",
        "logits_per_text is the transpose",
        """
scale = logit_scale.exp().clamp(max=100)
logits = scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
return logits, logits
""",
    ),
    _logits(
        "scale_as_float",
        "keep logit_scale on the graph",
        """
scale = min(math.exp(logit_scale.item()), 100.0)
logits = scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
return logits, logits.T
""",
    ),
]

_LABELS = "labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)"

LOSS = [
    _loss(
        "image_to_text_only",
        "you only computed image to text",
        f"""
{_LABELS}
return F.cross_entropy(logits_per_image, labels)
""",
    ),
    _loss(
        "text_to_image_only",
        "you only computed text to image",
        f"""
{_LABELS}
return F.cross_entropy(logits_per_image.T, labels)
""",
    ),
    _loss(
        "sum_of_directions",
        "average the two directions",
        f"""
{_LABELS}
return F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)
""",
    ),
    _loss(
        "sum_over_batch",
        "average over the batch",
        f"""
{_LABELS}
a = F.cross_entropy(logits_per_image, labels, reduction="sum")
b = F.cross_entropy(logits_per_image.T, labels, reduction="sum")
return (a + b) / 2
""",
    ),
    _loss(
        "zero_labels",
        "labels = torch.arange(B)",
        """
labels = torch.zeros(logits_per_image.shape[0], dtype=torch.long, device=logits_per_image.device)
return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2
""",
    ),
    _loss(
        "softmax_before_cross_entropy",
        "F.cross_entropy applies log-softmax itself",
        f"""
{_LABELS}
a = F.cross_entropy(logits_per_image.softmax(dim=1), labels)
b = F.cross_entropy(logits_per_image.T.softmax(dim=1), labels)
return (a + b) / 2
""",
    ),
    _loss(
        "mean_over_all_entries",
        "(the diagonal), not the mean over all entries",
        """
a = -logits_per_image.log_softmax(dim=1).mean()
b = -logits_per_image.T.log_softmax(dim=1).mean()
return (a + b) / 2
""",
    ),
]

_FORWARD = """
logits_per_image, _ = model(images, input_ids, attention_mask)
loss = clip_loss(logits_per_image)
"""

STEP = [
    _step(
        "no_zero_grad",
        "call optimizer.zero_grad() before loss.backward()",
        f"""
{_FORWARD}
loss.backward()
optimizer.step()
model.logit_scale.data.clamp_(0, math.log(100))
return loss.item()
""",
    ),
    _step(
        "zero_grad_after_backward",
        "the weights did not change",
        f"""
{_FORWARD}
loss.backward()
optimizer.zero_grad()
optimizer.step()
model.logit_scale.data.clamp_(0, math.log(100))
return loss.item()
""",
    ),
    _step(
        "no_optimizer_step",
        "then optimizer.step()",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
model.logit_scale.data.clamp_(0, math.log(100))
return loss.item()
""",
    ),
    _step(
        "item_before_backward",
        "call loss.backward() on the loss tensor",
        """
optimizer.zero_grad()
logits_per_image, _ = model(images, input_ids, attention_mask)
loss = clip_loss(logits_per_image).item()
loss.backward()
optimizer.step()
model.logit_scale.data.clamp_(0, math.log(100))
return loss
""",
    ),
    _step(
        "returns_tensor",
        "return the loss as a Python float",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
optimizer.step()
model.logit_scale.data.clamp_(0, math.log(100))
return loss
""",
    ),
    _step(
        "no_clamp",
        "clamp model.logit_scale.data to [0, math.log(100)]",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
optimizer.step()
return loss.item()
""",
    ),
    _step(
        "clamp_log_at_100",
        "not 100",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
optimizer.step()
model.logit_scale.data.clamp_(0, 100)
return loss.item()
""",
    ),
    _step(
        "no_lower_bound",
        "clamp the lower end too",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
optimizer.step()
model.logit_scale.data.clamp_(max=math.log(100))
return loss.item()
""",
    ),
    _step(
        "clamp_before_step",
        "after the step, clamp",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
model.logit_scale.data.clamp_(0, math.log(100))
optimizer.step()
return loss.item()
""",
    ),
    _step(
        "rewraps_logit_scale",
        "never model.logit_scale = nn.Parameter",
        f"""
optimizer.zero_grad()
{_FORWARD}
loss.backward()
optimizer.step()
model.logit_scale = nn.Parameter(model.logit_scale.detach().clamp(0, math.log(100)))
return loss.item()
""",
    ),
]

#: Item 6 of issue 7: what the loss is for. Both give the right value on the visible float32
#: logits; the hidden tests' ``grading.expect_loss_contract`` catches them.
LOSS_CONTRACT = [
    _loss(
        "text_direction_detached",
        "the gradient with respect to logits_per_image",
        """
labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
image_to_text = F.cross_entropy(logits_per_image, labels)
text_to_image = F.cross_entropy(logits_per_image.T.detach(), labels)
return (image_to_text + text_to_image) / 2
""",
    ),
    _loss(
        "float32_cast",
        "float64 inputs must give a float64 loss",
        """
logits = logits_per_image.float()
labels = torch.arange(logits.shape[0], device=logits.device)
return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
""",
    ),
]

MISTAKES = POOL + LOGITS + LOSS + STEP + LOSS_CONTRACT
