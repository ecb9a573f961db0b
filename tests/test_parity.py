"""The ONNX-vs-PyTorch parity check on hand-made detections: what NMS may legitimately change, and what not.

Each side is a fixed list of scored boxes (what the heads score before NMS) put through torchvision's NMS and
per-image cap, as RoIHeads does; the ONNX side may score them a little differently, or lack some (as when its
RPN kept another proposal), which is all that near-ties can change.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import batched_nms

from artdet.detector.export import check_parity

IMAGE = np.full((300, 700, 3), 128, dtype=np.uint8)
BLANK = np.zeros((300, 700, 3), dtype=np.uint8)


def _nms(boxes, scores, labels, nms_iou: float, cap: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores, labels = torch.tensor(scores, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)
    keep = batched_nms(boxes, scores, labels, nms_iou)[:cap]
    return boxes[keep], scores[keep], labels[keep]


class _RPN:
    """The knobs of torchvision's RPN that the check turns (the stand-ins below propose boxes themselves)."""

    def __init__(self):
        self.nms_thresh, self._pre_nms_top_n, self._post_nms_top_n = 0.7, {"testing": 1000}, {"testing": 1000}

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["testing"]

    def _get_top_n_idx(self, objectness, num_anchors_per_level):
        raise AssertionError("not reached: the stand-ins have no anchors")


class PyTorchSide(nn.Module):
    """A detector whose heads score `boxes` on every image that is not blank; of them, its RPN proposes only
    `proposed` (default: all) unless the check asks for every box it could score (NMS off)."""

    def __init__(self, boxes, scores, labels, nms_iou: float = 0.5, cap: int = 100, proposed=None):
        super().__init__()
        self.candidates, self.proposed = (boxes, scores, labels), proposed
        self.roi_heads, self.rpn = SimpleNamespace(nms_thresh=nms_iou, detections_per_img=cap), _RPN()

    def forward(self, images):
        boxes, scores, labels = self.candidates if images[0].any() else ([], [], [])
        if self.proposed is not None and self.roi_heads.nms_thresh < 1.0:
            boxes, scores, labels = ([x[i] for i in self.proposed] for x in (boxes, scores, labels))
        kept = _nms(boxes, scores, labels, self.roi_heads.nms_thresh, self.roi_heads.detections_per_img)
        return [dict(zip(("boxes", "scores", "labels"), kept))]


class OnnxSide:
    """The exported graph's stand-in: its own scored boxes through the same NMS (or a broken one)."""

    def __init__(self, boxes, scores, labels, nms_iou: float = 0.5, cap: int = 100):
        self.candidates, self.nms_iou, self.cap = (boxes, scores, labels), nms_iou, cap

    def raw(self, pixels: np.ndarray):
        boxes, scores, labels = self.candidates if pixels.any() else ([], [], [])
        return tuple(t.numpy() for t in _nms(boxes, scores, labels, self.nms_iou, self.cap))


def _row(*starts: float, width: float = 100.0, height: float = 100.0) -> list[list[float]]:
    """Boxes of one size side by side, starting at these x positions."""
    return [[x, 0.0, x + width, height] for x in starts]


def test_score_ties_are_compared_not_skipped():
    # every PyTorch detection ties another's score exactly; ONNX puts each 64 px away
    boxes, ties = _row(0, 200, 400), [0.5, 0.5, 0.5]
    torch_side = PyTorchSide(boxes, ties, [1, 1, 1])
    onnx_side = OnnxSide(_row(64, 264, 464), ties, [1, 1, 1])
    report = check_parity(torch_side, onnx_side, [IMAGE], 0.05)
    assert report.failures, "tied detections whose ONNX boxes are 64 px off passed unchecked"
    assert any("box off by 64.00 px" in failure for failure in report.failures)
    assert (report.matched, report.tied, report.compared) == (0, 0, 0)


def test_tied_detections_that_agree_are_matched():
    boxes, ties = _row(0, 200, 400), [0.5, 0.5, 0.5]
    report = check_parity(PyTorchSide(boxes, ties, [1, 1, 1]), OnnxSide(boxes, ties, [1, 1, 1]), [IMAGE], 0.05)
    assert report.failures == []
    assert (report.torch_detections, report.matched, report.tied) == (3, 3, 0)


def test_near_tie_within_the_score_tolerance_is_a_tie_not_a_mismatch():
    # A and B overlap (IoU 0.72) and score 0.0001 apart: PyTorch keeps B, ONNX (0.0002 off) keeps A
    a, b = [0, 0, 400, 300], [64, 0, 464, 300]
    other = [600, 0, 700, 100]
    torch_side = PyTorchSide([a, b, other], [0.8000, 0.8001, 0.9], [1, 1, 2])
    onnx_side = OnnxSide([a, b, other], [0.8002, 0.8001, 0.9], [1, 1, 2])
    assert onnx_side.raw(IMAGE)[0].tolist()[1] == a  # the stand-in did keep A
    report = check_parity(torch_side, onnx_side, [IMAGE], 0.05)
    assert report.failures == []  # the old check: "label 1 box off by 64.00 px, score by 0.0001"
    assert (report.torch_detections, report.matched, report.tied) == (2, 1, 1)
    assert (report.onnx_detections, report.compared) == (2, 2)  # A is checked against the box PyTorch scored


def test_what_follows_a_near_tie_under_nms_is_not_a_mismatch():
    # K and K' tie; PyTorch keeps K, which drops C, so P survives; ONNX keeps K', which spares C, which drops P
    k, k_, c, p = _row(100, 130, 90, 60)
    torch_side = PyTorchSide([k, k_, c, p], [0.9001, 0.9000, 0.8, 0.7], [1, 1, 1, 1])
    onnx_side = OnnxSide([k, k_, c, p], [0.9000, 0.9001, 0.8, 0.7], [1, 1, 1, 1])
    assert onnx_side.raw(IMAGE)[0].tolist() == [k_, c]
    report = check_parity(torch_side, onnx_side, [IMAGE], 0.05)
    assert report.failures == []
    assert (report.torch_detections, report.matched, report.tied, report.compared) == (2, 0, 2, 2)


def test_a_detection_whose_proposal_onnx_dropped_for_a_near_tie_is_a_tie():
    # ONNX's RPN kept C's proposal instead of P's; ONNX then keeps F, which drops C
    p, c, f = _row(0, 25, 55)
    torch_side = PyTorchSide([p, c, f], [0.7002, 0.7001, 0.7000], [1, 1, 1])
    onnx_side = OnnxSide([c, f], [0.7001, 0.7002], [1, 1])
    assert onnx_side.raw(IMAGE)[0].tolist() == [f]
    report = check_parity(torch_side, onnx_side, [IMAGE], 0.05)
    assert report.failures == []
    assert (report.matched, report.tied) == (1, 1)


def test_a_detection_whose_proposal_lost_a_tie_at_the_rpn_cut_is_a_tie():
    # P and Q score alike (a head that cannot tell them apart); PyTorch's RPN proposed P, ONNX's proposed Q
    p, q, r = _row(0, 300, 600)
    torch_side = PyTorchSide([p, q, r], [0.5, 0.5, 0.9], [1, 1, 2], proposed=[0, 2])
    onnx_side = OnnxSide([q, r], [0.5, 0.9], [1, 2])
    report = check_parity(torch_side, onnx_side, [IMAGE], 0.05)
    assert report.failures == []  # the old check: "label 1 box off by 300.00 px, score by 0.0000"
    assert (report.matched, report.tied, report.alternatives) == (1, 1, 1)


def test_ties_that_onnx_dropped_altogether_fail():
    boxes, ties = _row(0, 200, 400), [0.5, 0.5, 0.5]
    torch_side = PyTorchSide(boxes + _row(600), ties + [0.9], [1, 1, 1, 2])
    report = check_parity(torch_side, OnnxSide(_row(600), [0.9], [2]), [IMAGE], 0.05)
    assert len(report.failures) == 3 and all("label 1" in failure for failure in report.failures)


@pytest.mark.parametrize("onnx_boxes, onnx_scores, expected", [
    # an untied detection 64 px off
    ([[64, 0, 164, 100], [300, 0, 400, 100]], [0.9, 0.6], "box off by 64.00 px"),
    # an untied detection 20 px off: it overlaps, but it is none of PyTorch's boxes
    ([[20, 0, 120, 100], [300, 0, 400, 100]], [0.9, 0.6], "box off by 20.00 px, score by 0.0000"),
    # of two overlapping boxes 0.05 apart (no near-tie), the lower one kept, as by an NMS sorting the wrong way
    ([[20, 0, 120, 100], [300, 0, 400, 100]], [0.85, 0.6], "box off by 20.00 px, score by 0.0500"),
])
def test_a_real_mismatch_still_fails(onnx_boxes, onnx_scores, expected):
    torch_side = PyTorchSide([[0, 0, 100, 100], [20, 0, 120, 100], [300, 0, 400, 100]], [0.9, 0.85, 0.6], [1, 1, 2])
    assert len(torch_side([torch.ones(1)])[0]["scores"]) == 2  # PyTorch keeps the 0.9 box, not the 0.85 one
    report = check_parity(torch_side, OnnxSide(onnx_boxes, onnx_scores, [1, 2]), [IMAGE], 0.05)
    assert any(expected in failure for failure in report.failures), report.failures
    assert report.tied == 0


def test_a_missing_detection_is_not_excused_by_a_box_elsewhere_that_shares_its_score():
    # R scores what P does, but R sits by Q, far from P, and ONNX kept neither P nor R: P is missing, not tied
    p, q, r = _row(0, 300, 310)
    torch_side = PyTorchSide([p, q, r], [0.5, 0.505, 0.500005], [1, 1, 1])
    assert len(torch_side([torch.ones(1)])[0]["scores"]) == 2  # PyTorch's NMS drops R for Q
    report = check_parity(torch_side, OnnxSide([q], [0.505], [1]), [IMAGE], 0.05)
    assert len(report.failures) == 1 and "PyTorch label 1 score 0.5000 at [0.0" in report.failures[0]
    assert report.tied == 0


def test_a_missing_detection_whose_score_no_other_box_shares_fails():
    # ONNX lacks P; Q scores close to it (within the score tolerance) but no box of PyTorch's scores what P does
    p, q = _row(0, 300)
    torch_side = PyTorchSide([p, q], [0.5, 0.505], [1, 1])
    report = check_parity(torch_side, OnnxSide([q], [0.505], [1]), [IMAGE], 0.05)
    assert len(report.failures) == 1 and "box off by 300.00 px" in report.failures[0]


def test_onnx_dropping_a_box_that_overlaps_less_than_nms_allows_fails():
    boxes, scores = [[0, 0, 100, 100], [40, 0, 140, 100]], [0.9, 0.895]  # IoU 0.43: NMS at 0.5 keeps both
    report = check_parity(PyTorchSide(boxes, scores, [1, 1]), OnnxSide(boxes, scores, [1, 1], nms_iou=0.3),
                          [IMAGE], 0.05)
    assert len(report.failures) == 1 and "box off by 40.00 px" in report.failures[0]


def test_detections_the_per_image_cap_may_cut_either_way_are_not_compared():
    # B and C score 0.0002 apart; at a cap of two, PyTorch keeps B and ONNX keeps C
    a, b, c = _row(0, 200, 400)
    torch_side = PyTorchSide([a, b, c], [0.9, 0.5003, 0.5001], [1, 1, 1], cap=2)
    onnx_side = OnnxSide([a, b, c], [0.9, 0.4999, 0.5001], [1, 1, 1], cap=2)
    report = check_parity(torch_side, onnx_side, [IMAGE], 0.05)
    assert report.failures == []
    assert (report.torch_detections, report.matched, report.onnx_detections, report.alternatives) == (1, 1, 2, 1)


def test_onnx_keeping_a_box_nms_must_drop_fails():
    boxes, scores = [[0, 0, 100, 100], [10, 0, 110, 100]], [0.9, 0.6]  # IoU 0.82
    report = check_parity(PyTorchSide(boxes, scores, [1, 1]), OnnxSide(boxes, scores, [1, 1], nms_iou=0.9),
                          [IMAGE], 0.05)
    assert any("overlap by IoU 0.82" in failure for failure in report.failures), report.failures


def test_onnx_box_pytorch_never_scored_fails():
    boxes, scores = _row(0), [0.9]
    onnx_side = OnnxSide(boxes + _row(300), scores + [0.7], [1, 1])
    report = check_parity(PyTorchSide(boxes, scores, [1]), onnx_side, [IMAGE], 0.05)
    assert any("none of PyTorch's boxes" in failure for failure in report.failures), report.failures


def test_parity_that_compared_nothing_fails():
    from artdet.detector.export import ExportParityError, require_parity

    boxes, scores = _row(0, 200), [0.9, 0.8]
    report = check_parity(PyTorchSide(boxes, scores, [1, 1]), OnnxSide(boxes, scores, [1, 1]), [BLANK] * 3, 0.05)
    assert (report.images, report.failures, report.compared) == (3, [], 0)
    with pytest.raises(ExportParityError, match="compared nothing.*--no-check"):
        require_parity(report, 0.05, "model.onnx")


def test_parity_checks_reserve_images_until_something_is_compared():
    boxes, scores = _row(0, 200), [0.9, 0.8]
    reserve = iter([BLANK, IMAGE, IMAGE, IMAGE])
    report = check_parity(PyTorchSide(boxes, scores, [1, 1]), OnnxSide(boxes, scores, [1, 1]), [BLANK] * 2, 0.05,
                          reserve=reserve)
    assert (report.images, report.matched, report.compared, report.failures) == (4, 2, 2, [])
    assert len(list(reserve)) == 2  # the rest were never decoded
