"""Drawn detections, as a museum app shows them: every label whole, inside the image, over no other label."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from artdet.detector.draw import class_colour, draw_detections, place_label
from artdet.detector.results import Detection, DetectionResult


def test_labels_of_boxes_sharing_a_top_edge_do_not_overlap():
    result = DetectionResult(300, 200, [Detection((10, 0, 150, 180), 0.91, 1, "person"),
                                        Detection((12, 0, 290, 120), 0.88, 1, "person"),
                                        Detection((14, 0, 100, 60), 0.70, 2, "horse")])
    taken = []
    for det in result.detections:
        taken.append(place_label(det.box, (120, 20), (300, 200), taken))
    assert all(not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
               for i, a in enumerate(taken) for b in taken[i + 1:])
    assert all(0 <= r[0] and r[2] <= 300 and 0 <= r[1] and r[3] <= 200 for r in taken)
    image = np.asarray(draw_detections(np.zeros((200, 300, 3), np.uint8), result))
    assert (image == class_colour(1)).all(axis=2).any() and (image == class_colour(2)).all(axis=2).any()


def test_each_class_has_its_own_colour():
    assert len({class_colour(i) for i in range(1, 11)}) == 10


boxes = st.tuples(st.floats(0, 600), st.floats(0, 400), st.floats(1, 200), st.floats(1, 200)).map(
    lambda b: (b[0], b[1], min(640.0, b[0] + b[2]), min(480.0, b[1] + b[3])))


@settings(max_examples=200, deadline=None)
@given(st.lists(boxes, min_size=1, max_size=8), st.floats(20, 200), st.floats(10, 30))
def test_labels_stay_inside_the_image_and_apart_while_there_is_room(boxes, width, height):
    taken = []
    for box in boxes:
        taken.append(place_label(box, (width, height), (640, 480), taken))
    assert all(0 <= r[0] and r[2] <= 640 + 1e-6 and 0 <= r[1] and r[3] <= 480 + 1e-6 for r in taken)
    # 7 labels of at most 30 px leave 8 gaps in a 480 px column, one of them at least 30 px: room for the 8th
    assert all(not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
               for i, a in enumerate(taken) for b in taken[i + 1:])
