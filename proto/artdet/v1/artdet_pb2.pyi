from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_COCO: _ClassVar[DatasetFormat]
    DATASET_FORMAT_VOC: _ClassVar[DatasetFormat]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class SuggestStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUGGEST_STRATEGY_UNSPECIFIED: _ClassVar[SuggestStrategy]
    SUGGEST_STRATEGY_UNCERTAINTY: _ClassVar[SuggestStrategy]
    SUGGEST_STRATEGY_UNCERTAINTY_DIVERSITY: _ClassVar[SuggestStrategy]
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_COCO: DatasetFormat
DATASET_FORMAT_VOC: DatasetFormat
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
SUGGEST_STRATEGY_UNSPECIFIED: SuggestStrategy
SUGGEST_STRATEGY_UNCERTAINTY: SuggestStrategy
SUGGEST_STRATEGY_UNCERTAINTY_DIVERSITY: SuggestStrategy

class AnnotationFile(_message.Message):
    __slots__ = ("file_name", "content")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    content: bytes
    def __init__(self, file_name: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class DatasetHeader(_message.Message):
    __slots__ = ("name", "format", "annotation_files")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_FILES_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: DatasetFormat
    annotation_files: _containers.RepeatedCompositeFieldContainer[AnnotationFile]
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., annotation_files: _Optional[_Iterable[_Union[AnnotationFile, _Mapping]]] = ...) -> None: ...

class ImageChunk(_message.Message):
    __slots__ = ("file_name", "data", "sha256")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    data: bytes
    sha256: str
    def __init__(self, file_name: _Optional[str] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: DatasetHeader
    chunk: ImageChunk
    def __init__(self, header: _Optional[_Union[DatasetHeader, _Mapping]] = ..., chunk: _Optional[_Union[ImageChunk, _Mapping]] = ...) -> None: ...

class ClassCount(_message.Message):
    __slots__ = ("name", "boxes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    name: str
    boxes: int
    def __init__(self, name: _Optional[str] = ..., boxes: _Optional[int] = ...) -> None: ...

class DatasetStatistics(_message.Message):
    __slots__ = ("images", "boxes", "negative_images", "boxes_per_class", "min_width", "max_width", "min_height", "max_height", "bytes")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    BOXES_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    MIN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MIN_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    images: int
    boxes: int
    negative_images: int
    boxes_per_class: _containers.RepeatedCompositeFieldContainer[ClassCount]
    min_width: int
    max_width: int
    min_height: int
    max_height: int
    bytes: int
    def __init__(self, images: _Optional[int] = ..., boxes: _Optional[int] = ..., negative_images: _Optional[int] = ..., boxes_per_class: _Optional[_Iterable[_Union[ClassCount, _Mapping]]] = ..., min_width: _Optional[int] = ..., max_width: _Optional[int] = ..., min_height: _Optional[int] = ..., max_height: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("name", "version", "sha256", "statistics", "created_at", "reused")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    sha256: str
    statistics: DatasetStatistics
    created_at: float
    reused: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., sha256: _Optional[str] = ..., statistics: _Optional[_Union[DatasetStatistics, _Mapping]] = ..., created_at: _Optional[float] = ..., reused: _Optional[bool] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("deleted_versions",)
    DELETED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    deleted_versions: int
    def __init__(self, deleted_versions: _Optional[int] = ...) -> None: ...

class ListDatasetImagesRequest(_message.Message):
    __slots__ = ("name", "version", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AnnotatedBox(_message.Message):
    __slots__ = ("label", "box")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    label: str
    box: Box
    def __init__(self, label: _Optional[str] = ..., box: _Optional[_Union[Box, _Mapping]] = ...) -> None: ...

class DatasetImage(_message.Message):
    __slots__ = ("id", "file_name", "width", "height", "boxes")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    id: int
    file_name: str
    width: int
    height: int
    boxes: _containers.RepeatedCompositeFieldContainer[AnnotatedBox]
    def __init__(self, id: _Optional[int] = ..., file_name: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., boxes: _Optional[_Iterable[_Union[AnnotatedBox, _Mapping]]] = ...) -> None: ...

class ListDatasetImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token", "total")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[DatasetImage]
    next_page_token: str
    total: int
    def __init__(self, images: _Optional[_Iterable[_Union[DatasetImage, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class GetDatasetImageRequest(_message.Message):
    __slots__ = ("name", "version", "image_id", "max_side")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    image_id: int
    max_side: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., image_id: _Optional[int] = ..., max_side: _Optional[int] = ...) -> None: ...

class DatasetImageData(_message.Message):
    __slots__ = ("jpeg", "width", "height")
    JPEG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    jpeg: bytes
    width: int
    height: int
    def __init__(self, jpeg: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class TrainingParameters(_message.Message):
    __slots__ = ("arch", "strategy", "stage1_epochs", "stage2_epochs", "max_size", "seed", "lr", "stage2_lr_factor", "optimizer", "batch_size", "trainable_backbone_layers", "patience", "max_iters_per_epoch", "augment", "val_fraction", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARCH_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STAGE1_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STAGE2_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    STAGE2_LR_FACTOR_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_BACKBONE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    VAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    arch: str
    strategy: str
    stage1_epochs: int
    stage2_epochs: int
    max_size: int
    seed: int
    lr: float
    stage2_lr_factor: float
    optimizer: str
    batch_size: int
    trainable_backbone_layers: int
    patience: int
    max_iters_per_epoch: int
    augment: bool
    val_fraction: float
    extra: _containers.ScalarMap[str, str]
    def __init__(self, arch: _Optional[str] = ..., strategy: _Optional[str] = ..., stage1_epochs: _Optional[int] = ..., stage2_epochs: _Optional[int] = ..., max_size: _Optional[int] = ..., seed: _Optional[int] = ..., lr: _Optional[float] = ..., stage2_lr_factor: _Optional[float] = ..., optimizer: _Optional[str] = ..., batch_size: _Optional[int] = ..., trainable_backbone_layers: _Optional[int] = ..., patience: _Optional[int] = ..., max_iters_per_epoch: _Optional[int] = ..., augment: _Optional[bool] = ..., val_fraction: _Optional[float] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "variant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    variant: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., variant: _Optional[str] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("dataset_name", "dataset_version", "parameters", "weights", "base_model", "model_name")
    DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    dataset_name: str
    dataset_version: int
    parameters: TrainingParameters
    weights: str
    base_model: ModelRef
    model_name: str
    def __init__(self, dataset_name: _Optional[str] = ..., dataset_version: _Optional[int] = ..., parameters: _Optional[_Union[TrainingParameters, _Mapping]] = ..., weights: _Optional[str] = ..., base_model: _Optional[_Union[ModelRef, _Mapping]] = ..., model_name: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "dataset_name", "dataset_version", "model_name", "model_version", "config_json", "error", "created_at", "started_at", "finished_at", "restarts", "summary_json", "log_tail")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    dataset_name: str
    dataset_version: int
    model_name: str
    model_version: int
    config_json: str
    error: str
    created_at: float
    started_at: float
    finished_at: float
    restarts: int
    summary_json: str
    log_tail: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., dataset_name: _Optional[str] = ..., dataset_version: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., config_json: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., restarts: _Optional[int] = ..., summary_json: _Optional[str] = ..., log_tail: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    def __init__(self, state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ("freed_bytes",)
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    freed_bytes: int
    def __init__(self, freed_bytes: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Losses(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "type", "time", "state", "stage", "epoch", "step", "steps_per_epoch", "iteration", "losses", "lr", "eta_seconds", "map", "ap50", "payload_json")
    class LossesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    AP50_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    type: str
    time: float
    state: JobState
    stage: str
    epoch: int
    step: int
    steps_per_epoch: int
    iteration: int
    losses: _containers.ScalarMap[str, float]
    lr: float
    eta_seconds: float
    map: float
    ap50: float
    payload_json: str
    def __init__(self, job_id: _Optional[str] = ..., type: _Optional[str] = ..., time: _Optional[float] = ..., state: _Optional[_Union[JobState, str]] = ..., stage: _Optional[str] = ..., epoch: _Optional[int] = ..., step: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., iteration: _Optional[int] = ..., losses: _Optional[_Mapping[str, float]] = ..., lr: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., map: _Optional[float] = ..., ap50: _Optional[float] = ..., payload_json: _Optional[str] = ...) -> None: ...

class ClassInfo(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "active", "job_id", "arch", "class_names", "metrics_json", "created_at", "size_bytes", "sha256", "class_info", "variants")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CLASS_INFO_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    active: bool
    job_id: str
    arch: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    metrics_json: str
    created_at: float
    size_bytes: int
    sha256: str
    class_info: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    variants: _containers.RepeatedCompositeFieldContainer[ModelVariant]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., active: _Optional[bool] = ..., job_id: _Optional[str] = ..., arch: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., metrics_json: _Optional[str] = ..., created_at: _Optional[float] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., class_info: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., variants: _Optional[_Iterable[_Union[ModelVariant, _Mapping]]] = ...) -> None: ...

class ModelVariant(_message.Message):
    __slots__ = ("kind", "size_bytes", "map", "ap50", "latency_ms_p50", "parity_json", "refused")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    AP50_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    PARITY_JSON_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    size_bytes: int
    map: float
    ap50: float
    latency_ms_p50: float
    parity_json: str
    refused: str
    def __init__(self, kind: _Optional[str] = ..., size_bytes: _Optional[int] = ..., map: _Optional[float] = ..., ap50: _Optional[float] = ..., latency_ms_p50: _Optional[float] = ..., parity_json: _Optional[str] = ..., refused: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("data", "offset", "total_bytes", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_bytes: int
    sha256: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class SetClassInfoRequest(_message.Message):
    __slots__ = ("model", "class_info")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_INFO_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    class_info: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., class_info: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobCount(_message.Message):
    __slots__ = ("state", "jobs")
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    jobs: int
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., jobs: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "roles", "models_loaded", "models_active", "jobs", "data_bytes", "free_bytes", "detect_only")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    MODELS_LOADED_FIELD_NUMBER: _ClassVar[int]
    MODELS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    DATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DETECT_ONLY_FIELD_NUMBER: _ClassVar[int]
    version: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    models_loaded: _containers.RepeatedCompositeFieldContainer[ModelRef]
    models_active: _containers.RepeatedCompositeFieldContainer[ModelRef]
    jobs: _containers.RepeatedCompositeFieldContainer[JobCount]
    data_bytes: int
    free_bytes: int
    detect_only: bool
    def __init__(self, version: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., models_loaded: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ..., models_active: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[JobCount, _Mapping]]] = ..., data_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., detect_only: _Optional[bool] = ...) -> None: ...

class SuggestImagesRequest(_message.Message):
    __slots__ = ("header", "image")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    header: SuggestHeader
    image: PoolImage
    def __init__(self, header: _Optional[_Union[SuggestHeader, _Mapping]] = ..., image: _Optional[_Union[PoolImage, _Mapping]] = ...) -> None: ...

class SuggestHeader(_message.Message):
    __slots__ = ("model_name", "model_version", "budget", "strategy", "labelled_dataset", "labelled_version", "pool_dataset", "pool_version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    LABELLED_DATASET_FIELD_NUMBER: _ClassVar[int]
    LABELLED_VERSION_FIELD_NUMBER: _ClassVar[int]
    POOL_DATASET_FIELD_NUMBER: _ClassVar[int]
    POOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    budget: int
    strategy: SuggestStrategy
    labelled_dataset: str
    labelled_version: int
    pool_dataset: str
    pool_version: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., budget: _Optional[int] = ..., strategy: _Optional[_Union[SuggestStrategy, str]] = ..., labelled_dataset: _Optional[str] = ..., labelled_version: _Optional[int] = ..., pool_dataset: _Optional[str] = ..., pool_version: _Optional[int] = ...) -> None: ...

class PoolImage(_message.Message):
    __slots__ = ("file_name", "image")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    image: bytes
    def __init__(self, file_name: _Optional[str] = ..., image: _Optional[bytes] = ...) -> None: ...

class Suggestion(_message.Message):
    __slots__ = ("file_name", "rank", "score", "uncertainty", "disagreement", "novelty", "reasons", "detections", "width", "height")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_FIELD_NUMBER: _ClassVar[int]
    NOVELTY_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    rank: int
    score: float
    uncertainty: float
    disagreement: float
    novelty: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    width: int
    height: int
    def __init__(self, file_name: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., uncertainty: _Optional[float] = ..., disagreement: _Optional[float] = ..., novelty: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class SuggestImagesResponse(_message.Message):
    __slots__ = ("suggestions", "model_name", "model_version", "pool_images", "notes")
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POOL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[Suggestion]
    model_name: str
    model_version: int
    pool_images: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, suggestions: _Optional[_Iterable[_Union[Suggestion, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., pool_images: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("image", "model_name", "model_version", "score_threshold", "max_detections", "classes", "variant")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    model_name: str
    model_version: int
    score_threshold: float
    max_detections: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    variant: str
    def __init__(self, image: _Optional[bytes] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., score_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., variant: _Optional[str] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "box_normalized", "score", "label", "label_id", "description")
    BOX_FIELD_NUMBER: _ClassVar[int]
    BOX_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    box: Box
    box_normalized: Box
    score: float
    label: str
    label_id: int
    description: str
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., box_normalized: _Optional[_Union[Box, _Mapping]] = ..., score: _Optional[float] = ..., label: _Optional[str] = ..., label_id: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("detections", "width", "height", "model_name", "model_version", "server_time_ms", "error")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    width: int
    height: int
    model_name: str
    model_version: int
    server_time_ms: float
    error: FrameError
    def __init__(self, detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., server_time_ms: _Optional[float] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
