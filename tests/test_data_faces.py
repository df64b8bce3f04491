"""Face detection and alignment on real faces (astronaut photo, ORL, CK+48)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from keras_fer.data import faces, video
from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8
from keras_fer.data.records import RecordTable

TARGETS = np.asarray(faces.DEFAULT_EYE_POSITIONS) * ALIGNED_SIZE - 0.5


@pytest.fixture(scope="module")
def aligner():
    with faces.FaceAligner() as aligner:
        yield aligner


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


def _rotate(image, degrees):
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _redetected_eyes(aligner, crop):
    """Eyes found again on a 4x upscaled crop, in crop pixels (independent of the transform)."""
    found = aligner.detector.detect(cv2.resize(crop, (240, 240), interpolation=cv2.INTER_CUBIC))
    assert len(found) == 1
    return (found[0].keypoints[:2] + 0.5) / 4 - 0.5


def _angle(transform):
    return np.degrees(np.arctan2(transform[1, 0], transform[0, 0]))


def _table(images, paths):
    n = len(images)
    return RecordTable(
        images=images,
        expression=np.full(n, -1),
        subject=[Path(p).parent.name for p in paths],
        sequence=[""] * n,
        frame_role=["unknown"] * n,
        path=paths,
        name="test",
    )


def test_eye_transform_golden_values():
    # Level eyes 20 px apart -> 24 px apart at (17.5, 22.3) and (41.5, 22.3): scale 1.2.
    m = faces.eye_transform(np.array([[10.0, 20.0], [30.0, 20.0]]))
    np.testing.assert_allclose(m, [[1.2, 0.0, 5.5], [0.0, 1.2, -1.7]], atol=1e-9)
    # Vertical eyes (image-left eye on top): a 90 degree turn, scale 2.4.
    m = faces.eye_transform(np.array([[0.0, 0.0], [0.0, 10.0]]))
    np.testing.assert_allclose(m, [[0.0, 2.4, 17.5], [-2.4, 0.0, 22.3]], atol=1e-9)
    np.testing.assert_allclose(faces.apply_transform(m, [[0.0, 10.0]]), [[41.5, 22.3]], atol=1e-5)


def test_eye_transform_rejects_coincident_eyes():
    with pytest.raises(ValueError, match="coincide"):
        faces.eye_transform(np.array([[5.0, 5.0], [5.0, 5.0]]))


def test_warp_face_downscaling_does_not_alias():
    stripes = np.zeros((600, 600), np.uint8)
    stripes[:, ::2] = 255
    # Crop pixel u is centred on source x = 10u + 4, always a white column.
    matrix = np.array([[0.1, 0.0, -0.4], [0.0, 0.1, -0.4]])
    crop = faces.warp_face(stripes, matrix, 60)
    naive = cv2.warpAffine(stripes, matrix, (60, 60), flags=cv2.INTER_LINEAR)
    # Plain bilinear sampling hits only white columns; the area average is mid-grey.
    assert float(naive.mean()) == 255.0
    assert crop.shape == (60, 60) and crop.dtype == np.uint8
    assert abs(float(crop.mean()) - 127.5) < 3 and float(crop.std()) < 3


def test_bad_inputs_say_what_was_received(aligner):
    with pytest.raises(ValueError, match="dtype=float32"):
        aligner.align_faces(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match=r"shape=\(64, 64, 2\)"):
        aligner.align_faces(np.zeros((64, 64, 2), np.uint8))
    with pytest.raises(ValueError, match="eye_positions"):
        faces.FaceAligner(eye_positions=((0.7, 0.4), (0.3, 0.4)))
    with pytest.raises(ValueError, match="min_detection_confidence=1.5"):
        faces.FaceDetector(min_detection_confidence=1.5)


def test_astronaut_one_face_aligned(aligner, astronaut):
    found = faces.align_faces(astronaut, aligner=aligner)
    assert len(found) == 1
    face = found[0]
    x, y, w, h = face.box
    # The face of the 512x512 photo lies around x 180-270, y 80-180.
    assert 150 <= x <= 200 and 60 <= y <= 110 and 70 <= w <= 130 and 70 <= h <= 130
    assert face.score > 0.7
    assert face.crop.shape == (ALIGNED_SIZE, ALIGNED_SIZE) and face.crop.dtype == np.uint8
    np.testing.assert_allclose(face.aligned_keypoints[:2], TARGETS, atol=1e-3)
    # Eyes lie inside the box, nose and mouth below them.
    assert np.all((face.keypoints[:2] >= [x, y]) & (face.keypoints[:2] <= [x + w, y + h]))
    assert face.aligned_keypoints[3, 1] > face.aligned_keypoints[2, 1] > TARGETS[0, 1]
    # A fresh detection on the crop finds the eyes where the alignment put them.
    np.testing.assert_allclose(_redetected_eyes(aligner, face.crop), TARGETS, atol=2.5)


def test_gray_and_rgb_inputs_agree(aligner, astronaut):
    rgb = aligner.align_largest(astronaut)
    gray = aligner.align_largest(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))
    assert gray is not None and rgb is not None
    np.testing.assert_allclose(gray.keypoints[:2], rgb.keypoints[:2], atol=3)


@pytest.mark.parametrize("degrees", [-20, 20])
def test_rotated_face_comes_out_upright(aligner, astronaut, degrees):
    upright = aligner.align_largest(astronaut)
    face = aligner.align_largest(_rotate(astronaut, degrees))
    assert face is not None
    # The alignment undoes the rotation applied to the photo (within the detector's noise).
    assert abs(_angle(face.transform) - _angle(upright.transform) - degrees) < 3
    eyes = _redetected_eyes(aligner, face.crop)
    assert abs(eyes[1, 1] - eyes[0, 1]) < 2.0
    np.testing.assert_allclose(eyes, TARGETS, atol=2.5)


@pytest.fixture(scope="module")
def predictor_aligner():
    """keras_fer.Predictor's alignment: one keypoint refinement moved ONE_STEP_GAIN of the way,
    at 96 px (GroupFaceDetector's refiner)."""
    from keras_fer.data.face_search import GroupFaceDetector

    with GroupFaceDetector() as detector:
        yield faces.FaceAligner(detector=detector, refine_steps=1,
                                refine_gain=faces.ONE_STEP_GAIN)


def test_one_damped_step_stops_partway_to_the_redetection(predictor_aligner, orl_dir):
    image = cv2.imread(str(orl_dir / "s5" / "1.pgm"), cv2.IMREAD_GRAYSCALE)
    detector = predictor_aligner.detector
    [first] = detector.detect(image)
    full = faces.FaceAligner(detector=detector, refine_steps=1).refine_keypoints(
        image, first.keypoints)
    damped = predictor_aligner.refine_keypoints(image, first.keypoints)
    assert np.abs(full - first.keypoints).max() > 0.5  # the re-detection moved the points
    np.testing.assert_allclose(damped, first.keypoints + 0.8 * (full - first.keypoints),
                               atol=1e-4)
    with pytest.raises(ValueError, match="refine_gain=1.5"):
        faces.FaceAligner(refine_gain=1.5)
    with pytest.raises(ValueError, match="refine_gain=0"):
        faces.FaceAligner(refine_gain=0)


@pytest.mark.parametrize("degrees", [-20, 0, 20])
def test_predictor_alignment_upright_with_eyes_in_place(predictor_aligner, aligner, astronaut,
                                                         degrees):
    upright = aligner.align_largest(astronaut)  # two full refinements
    face = predictor_aligner.align_largest(_rotate(astronaut, degrees))
    assert face is not None
    assert abs(_angle(face.transform) - _angle(upright.transform) - degrees) < 3
    eyes = _redetected_eyes(aligner, face.crop)
    # Eye rows 2.0 px apart at +20 degrees (up to 2.05 over -25..25 in steps of 5; two full
    # steps at 128 px: up to 1.3, three at 96 px: up to 2.1): looser than the two-step
    # test's 2.0 px above.
    assert abs(eyes[1, 1] - eyes[0, 1]) < 2.5
    np.testing.assert_allclose(eyes, TARGETS, atol=2.5)


def test_predictor_alignment_agrees_with_two_full_steps_on_orl(predictor_aligner, orl_dir):
    """Against the previous alignment (two full refinements at 128 px) on 40 ORL faces: the
    eyes within the refinement's own step-to-step noise. Measured: eyes within 0.023 eye
    distances (median; max 0.042), eye line within 0.84 degrees (median; max 3.4); a third full
    step moves the previous alignment itself by 0.016 (max 0.050) and 0.70 (max 3.6)."""
    from keras_fer.data.face_search import GroupFaceDetector

    images = [cv2.imread(str(orl_dir / f"s{k}" / "1.pgm"), cv2.IMREAD_GRAYSCALE)
              for k in range(1, 41)]
    with GroupFaceDetector(refine_input=None) as detector:
        before = faces.FaceAligner(detector=detector, refine_steps=2)
        errors, angles = [], []
        for image in images:
            [old] = before.align_faces(image)
            [new] = predictor_aligner.align_faces(image)
            distance = np.linalg.norm(old.keypoints[1] - old.keypoints[0])
            errors.append(np.abs(new.keypoints[:2] - old.keypoints[:2]).max() / distance)
            angles.append(abs(_angle(new.transform) - _angle(old.transform)))
    assert np.median(errors) < 0.035 and max(errors) < 0.07, np.round(errors, 3)
    assert np.median(angles) < 1.2 and max(angles) < 4.5, np.round(angles, 2)


def test_no_face_gives_empty_results(aligner):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    blank = np.full((100, 100), 128, np.uint8)
    for image in (noise, blank):
        assert aligner.align_faces(image) == []
        assert aligner.align_largest(image) is None
        assert aligner.detector.detect(image) == []


def test_orl_detection_rate(aligner, orl_dir):
    paths = sorted(orl_dir.glob("s*/*.pgm"))
    assert len(paths) == 400
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    hits = sum(bool(aligner.detector.detect(image)) for image in images)
    # Measured: 400 / 400 with the default settings.
    assert hits / len(paths) >= 0.98


def test_default_eye_positions_match_ckplus48(aligner, ckplus48_dir):
    paths = sorted(ckplus48_dir.glob("*/*.png"))[::25]
    eyes = []
    for p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        found = aligner.detector.detect(image)
        assert found, p
        eyes.append((found[0].keypoints[:2] + 0.5) / image.shape[::-1])
    np.testing.assert_allclose(np.mean(eyes, axis=0), faces.DEFAULT_EYE_POSITIONS, atol=0.03)


def test_align_records_skips_images_without_face(aligner, orl_dir):
    paths = [str(orl_dir / f"s{k}" / "1.pgm") for k in range(1, 9)]
    images = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths]
    images.insert(3, np.full((112, 92), 200, np.uint8))
    paths.insert(3, "blank.pgm")
    table = _table(np.stack(images), paths)
    out = faces.align_records(table, aligner=aligner, progress=False)
    assert out.images.shape == (8, ALIGNED_SIZE, ALIGNED_SIZE) and out.images.dtype == np.uint8
    assert "blank.pgm" not in out.path.tolist() and out.subject.tolist()[3] == "s4"
    assert [(s.path, s.reason) for s in out.skipped] == [("blank.pgm", faces.NO_FACE)]
    assert table.skipped == [] and len(table) == 9


def test_align_records_skip_detection_only_resizes(ckplus48_dir):
    paths = [str(p) for p in sorted(ckplus48_dir.glob("happy/*.png"))[:3]]
    images = np.stack([cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths])
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = images[0], np.zeros((70, 50), np.uint8)
    aligner = faces.FaceAligner()
    out = aligner.align_records(_table(images, paths), skip_detection=True, progress=False)
    np.testing.assert_array_equal(out.images, resize_uint8(images, ALIGNED_SIZE))
    out = aligner.align_records(_table(ragged, paths[:2]), skip_detection=True, progress=False)
    assert out.images.shape == (2, ALIGNED_SIZE, ALIGNED_SIZE)
    # No detector was loaded for already-cropped faces.
    assert aligner._detector is None


def test_closed_detector_refuses_work():
    detector = faces.FaceDetector()
    detector.close()
    with pytest.raises(RuntimeError, match="closed"):
        detector.detect(np.zeros((32, 32), np.uint8))


def _write_video(path, frames_rgb, fps=10.0):
    h, w = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_frames_are_rgb_and_subsampled(tmp_path):
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 200
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(11)] + [red]
    path = tmp_path / "clip.avi"
    _write_video(path, frames)
    assert video.video_info(path) == video.VideoInfo(64, 48, 10.0, 12)
    got = list(video.iter_frames(path, every=3))
    assert [i for i, _ in got] == [0, 3, 6, 9]
    for i, frame in got:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert abs(float(frame.mean()) - 20 * i) < 3
    last = list(video.iter_frames(path))[-1][1]
    assert last[..., 0].mean() > 180 and last[..., 2].mean() < 20
    assert [i for i, _ in video.iter_frames(path, max_frames=2)] == [0, 1]
    with pytest.raises(FileNotFoundError, match="missing.avi"):
        video.video_info(tmp_path / "missing.avi")
    with pytest.raises(ValueError, match="every=0"):
        next(video.iter_frames(path, every=0))


def test_faces_aligned_from_video_frames(aligner, astronaut, tmp_path):
    frame = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
    path = tmp_path / "astronaut.avi"
    _write_video(path, [frame, np.zeros_like(frame), _rotate(frame, 15)])
    results = [aligner.align_largest(rgb) for _, rgb in video.iter_frames(path)]
    assert results[0] is not None and results[1] is None and results[2] is not None
    assert abs(_angle(results[2].transform) - _angle(results[0].transform) - 15) < 3
