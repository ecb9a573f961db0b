"""`artdet serve | push | jobs | models` and `artdet detect --server`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from artdet.detector.cli import ANNOTATIONS_HELP, IMAGES_HELP, add_train_config_arguments, print_json, show_results
from artdet.detector.config import NAMED_WEIGHTS
from artdet.detector.errors import InvalidArgument


SERVER_ENV = "ARTDET_SERVER"  # what --server defaults to


def _connect(args):
    from artdet.tools.client import connect

    return connect(args.server, args.token, args.tls_ca)


# serve ------------------------------------------------------------------------------------------

def serve_config(args: argparse.Namespace):
    """`artdet serve`'s ServerConfig: each setting from its flag, else from $ARTDET_<FLAG> (ARTDET_PORT,
    ARTDET_TLS_CERT, ...), else ServerConfig's default. `artdet health` reads the same variables."""
    from artdet.server.app import ServerConfig

    values = {}
    for flag, (kind, _) in SERVE_FLAGS.items():
        variable, value = f"ARTDET_{flag.upper()}", getattr(args, flag, None)
        if value is None and os.environ.get(variable):
            try:
                value = kind(os.environ[variable])
            except ValueError:
                raise ValueError(f"${variable}={os.environ[variable]!r}: expected {kind.__name__}") from None
        if value is not None:
            values[flag] = value
    return ServerConfig(insecure=getattr(args, "insecure", False), console=not getattr(args, "no_console", False),
                        **values)


def cmd_serve(args: argparse.Namespace) -> int:
    from artdet.server.app import serve

    serve(serve_config(args))
    return 0


# datasets ---------------------------------------------------------------------------------------

def cmd_push(args: argparse.Namespace) -> int:
    from artdet.detector.annotation_formats import opened
    from artdet.tools.client import check_local_images, push_dataset

    annotations = Path(args.annotations)
    if not annotations.exists():
        raise FileNotFoundError(f"annotations not found: {annotations}")
    with opened(annotations, args.images) as (annotations, images):
        for note in check_local_images(annotations, images):
            print(f"artdet push: {note}", file=sys.stderr)
        dataset = push_dataset(_connect(args), args.name, annotations, images, progress=not args.quiet)
    if args.json:
        print_json(_dataset_json(dataset))
    else:
        stats = dataset.statistics
        note = " (identical to an existing version)" if dataset.reused else ""
        print(f"{dataset.name} v{dataset.version}{note}: {stats.images} images, {stats.boxes} boxes", file=sys.stderr)
        print(dataset.version)
    return 0


def _dataset_json(dataset) -> dict:
    stats = dataset.statistics
    return {"name": dataset.name, "version": dataset.version, "sha256": dataset.sha256,
            "created_at": dataset.created_at, "reused": dataset.reused,
            "statistics": {"images": stats.images, "boxes": stats.boxes, "negative_images": stats.negative_images,
                           "boxes_per_class": {c.name: c.boxes for c in stats.boxes_per_class},
                           "min_width": stats.min_width, "max_width": stats.max_width,
                           "min_height": stats.min_height, "max_height": stats.max_height, "bytes": stats.bytes}}


def _print_datasets(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    for row in rows:
        stats = row["statistics"]
        per_class = ", ".join(f"{name} {count}" for name, count in stats["boxes_per_class"].items())
        print(f"{row['name']} v{row['version']}  {stats['images']} images, {stats['boxes']} boxes ({per_class}), "
              f"{stats['bytes'] / 1e6:.1f} MB")


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    datasets = connection.datasets().ListDatasets(pb.ListDatasetsRequest(name=args.name or ""),
                                                  metadata=connection.metadata).datasets
    _print_datasets([_dataset_json(d) for d in datasets], args.json)
    return 0


def cmd_datasets_show(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    dataset = connection.datasets().GetDataset(pb.GetDatasetRequest(name=args.name, version=args.version),
                                               metadata=connection.metadata)
    _print_datasets([_dataset_json(dataset)], args.json)
    return 0


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    reply = connection.datasets().DeleteDataset(pb.DeleteDatasetRequest(name=args.name, version=args.version),
                                                metadata=connection.metadata)
    print(f"deleted {reply.deleted_versions} version(s) of {args.name}")
    return 0


# jobs -------------------------------------------------------------------------------------------

def training_parameters(args: argparse.Namespace):
    """The `jobs start` flags as TrainingParameters."""
    from artdet.tools.client import training_parameters_of

    try:
        return training_parameters_of(vars(args), args.augment_enabled)
    except InvalidArgument as exc:
        name, _, rest = str(exc).partition(":")
        raise InvalidArgument(f"--{name.replace('_', '-')}:{rest}") from None


def cmd_jobs_start(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    request = pb.StartJobRequest(dataset_name=args.dataset, dataset_version=args.dataset_version,
                                 parameters=training_parameters(args), model_name=args.model_name or "")
    if args.base_model:
        name, _, version = args.base_model.partition(":")
        request.base_model.CopyFrom(pb.ModelRef(name=name, version=int(version or 0)))
    else:
        request.weights = args.weights
    connection = _connect(args)
    job = connection.training().StartJob(request, metadata=connection.metadata)
    print(job.id)
    if not args.watch:
        return 0
    return _finish_watch(connection, job.id, args)


def _finish_watch(connection, job_id: str, args) -> int:
    from artdet.v1 import artdet_pb2 as pb
    from artdet.tools.client import watch_job

    job = watch_job(connection, job_id, progress=not args.quiet)
    state = pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    if job.state == pb.JOB_STATE_SUCCEEDED:
        summary = json.loads(job.summary_json or "{}")
        final, baseline = summary.get("final", {}), summary.get("baseline", {})
        print(f"job {job.id} succeeded: model {job.model_name} v{job.model_version}; mAP "
              f"{baseline.get('map', 0):.4f} (baseline) -> {final.get('map', 0):.4f}", file=sys.stderr)
        return 0
    print(f"job {job.id} {state}" + (f": {job.error}" if job.error else ""), file=sys.stderr)
    return 1


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    return _finish_watch(_connect(args), args.job_id, args)


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    job = connection.training().CancelJob(pb.CancelJobRequest(id=args.job_id), metadata=connection.metadata)
    print(f"job {job.id}: {pb.JobState.Name(job.state).removeprefix('JOB_STATE_').lower()}")
    return 0


def cmd_jobs_delete(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    deleted = connection.training().DeleteJob(pb.DeleteJobRequest(id=args.job_id), metadata=connection.metadata)
    print(f"deleted job {args.job_id} (freed {deleted.freed_bytes / 1e6:.1f} MB)")
    return 0


def _job_json(job) -> dict:
    from artdet.v1 import artdet_pb2 as pb

    return {"id": job.id, "state": pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower(),
            "dataset": job.dataset_name, "dataset_version": job.dataset_version, "model_name": job.model_name,
            "model_version": job.model_version, "error": job.error, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at, "restarts": job.restarts}


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    job = connection.training().GetJob(pb.GetJobRequest(id=args.job_id), metadata=connection.metadata)
    row = {**_job_json(job), "config": json.loads(job.config_json or "{}"),
           "summary": json.loads(job.summary_json or "{}")}
    if args.json:
        print_json(row)
        return 0
    print(f"job {row['id']}: {row['state']}; dataset {row['dataset']} v{row['dataset_version']} -> model "
          f"{row['model_name']}" + (f" v{row['model_version']}" if row["model_version"] else "")
          + (f"; error: {row['error']}" if row["error"] else ""))
    final, baseline = row["summary"].get("final") or {}, row["summary"].get("baseline") or {}
    if final:
        print(f"val mAP {baseline.get('map', 0.0):.4f} (baseline) -> {final.get('map', 0.0):.4f}; "
              f"AP50 {final.get('ap50', 0.0):.4f}")
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    jobs = connection.training().ListJobs(pb.ListJobsRequest(), metadata=connection.metadata).jobs
    rows = [_job_json(j) for j in jobs]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['id']}  {row['state']:<9}  {row['dataset']} v{row['dataset_version']} -> "
                  f"{row['model_name']}" + (f" v{row['model_version']}" if row["model_version"] else ""))
    return 0


# models -----------------------------------------------------------------------------------------

def _model_json(model) -> dict:
    return {"name": model.name, "version": model.version, "active": model.active,
            "metrics": json.loads(model.metrics_json or "{}"), "arch": model.arch, "classes": list(model.class_names),
            "job_id": model.job_id, "sha256": model.sha256,
            "class_info": {info.name: info.description for info in model.class_info}}


def cmd_models_list(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    models = connection.models().ListModels(pb.ListModelsRequest(name=args.name or ""),
                                            metadata=connection.metadata).models
    rows = [_model_json(m) for m in models]
    if args.json:
        print_json(rows)
    else:
        print("  (* = the active version, which Detect serves)")
        for row in rows:
            final = (row["metrics"].get("final") or {}).get("map")
            print(f"{'*' if row['active'] else ' '} {row['name']} v{row['version']}  {row['arch']}  "
                  f"val mAP {'-' if final is None else f'{final:.4f}'}")
    return 0


def cmd_models_delete(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    connection.models().DeleteModel(pb.ModelRef(name=args.name, version=args.version), metadata=connection.metadata)
    print(f"deleted {args.name} v{args.version}")
    return 0


def cmd_models_activate(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    model = connection.models().ActivateModel(pb.ModelRef(name=args.name, version=args.version),
                                              metadata=connection.metadata)
    print(f"{model.name} v{model.version} is active")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    connection = _connect(args)
    model = connection.models().RollbackModel(pb.RollbackModelRequest(name=args.name), metadata=connection.metadata)
    print(f"{model.name} v{model.version} is active")
    return 0


def cmd_models_download(args: argparse.Namespace) -> int:
    import hashlib

    from artdet.v1 import artdet_pb2 as pb
    from artdet.detector.files import atomic_write_bytes
    from artdet.detector.model_card import ModelCard

    connection = _connect(args)
    chunks = connection.models().DownloadModel(pb.ModelRef(name=args.name, version=args.version),
                                               metadata=connection.metadata)
    digest, expected, parts = hashlib.sha256(), "", []
    for chunk in chunks:
        digest.update(chunk.data)
        parts.append(chunk.data)
        expected = chunk.sha256 or expected
    if digest.hexdigest() != expected:
        raise ValueError(f"download of {args.name} arrived damaged (sha256 mismatch)")
    atomic_write_bytes(Path(args.out), lambda handle: [handle.write(p) for p in parts])
    card = ModelCard.from_onnx(args.out)
    print(f"{args.name}: {card.arch}, classes {', '.join(card.class_names)}; input any size (resized to "
          f"{card.min_size}-{card.max_size} px); scores >= {card.score_threshold}", file=sys.stderr)
    print(args.out)
    return 0


def cmd_models_describe(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb

    info = []
    for item in args.class_info:
        name, sep, description = item.partition("=")
        if not sep:
            raise ValueError(f"class info {item!r}: expected CLASS=DESCRIPTION")
        info.append(pb.ClassInfo(name=name, description=description))
    connection = _connect(args)
    model = connection.models().SetClassInfo(pb.SetClassInfoRequest(
        model=pb.ModelRef(name=args.name, version=args.version), class_info=info), metadata=connection.metadata)
    print_json(_model_json(model))
    return 0


# detect -----------------------------------------------------------------------------------------

def cmd_detect_remote(args: argparse.Namespace) -> int:
    from artdet.v1 import artdet_pb2 as pb
    from artdet.detector.draw import save_drawing
    from artdet.detector.images import decode_image
    from artdet.detector.results import Detection, DetectionResult

    path = Path(args.image)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = path.read_bytes()
    request = pb.DetectRequest(image=data, model_name=args.model or "", score_threshold=args.threshold,
                               max_detections=args.top_k, classes=args.classes.split(",") if args.classes else [])
    connection = _connect(args)
    response = connection.detection().Detect(request, metadata=connection.metadata, timeout=args.timeout)
    result = DetectionResult(response.width, response.height, [
        Detection((d.box.x1, d.box.y1, d.box.x2, d.box.y2), d.score, d.label_id, d.label, d.description)
        for d in response.detections], response.model_name, response.model_version, response.server_time_ms)
    if args.draw:
        save_drawing(decode_image(data, source=str(path)), result, args.draw)
    show_results([(None, result)], args)
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    """Rank a pool's images by what labelling them should teach the model; a Label Studio task list of the top."""
    import urllib.parse

    from google.protobuf import json_format

    from artdet.v1 import artdet_pb2 as pb
    from artdet.detector.images import IMAGE_SUFFIXES
    from artdet.detector.label_studio import rectangle_results
    from artdet.detector.results import Detection

    strategies = {"uncertainty": pb.SUGGEST_STRATEGY_UNCERTAINTY,
                  "uncertainty-diversity": pb.SUGGEST_STRATEGY_UNCERTAINTY_DIVERSITY}
    header = pb.SuggestHeader(model_name=args.model or "", budget=args.budget, strategy=strategies[args.strategy],
                              labelled_dataset=args.dataset or "")
    pool = Path(args.pool)
    if pool.is_dir():
        files = sorted(p for p in pool.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise FileNotFoundError(f"--pool: no images in {pool}")
    else:
        header.pool_dataset, files = args.pool, []

    def requests():
        yield pb.SuggestImagesRequest(header=header)
        for path in files:
            yield pb.SuggestImagesRequest(image=pb.PoolImage(file_name=path.relative_to(pool).as_posix(),
                                                             image=path.read_bytes()))

    connection = _connect(args)
    reply = connection.detection().SuggestImages(requests(), metadata=connection.metadata)
    tasks = []
    for suggestion in reply.suggestions:
        detections = [Detection((d.box.x1, d.box.y1, d.box.x2, d.box.y2), d.score, d.label_id, d.label)
                      for d in suggestion.detections]
        tasks.append({"data": {"image": args.image_url_prefix + urllib.parse.quote(suggestion.file_name),
                               "artdet_rank": suggestion.rank, "artdet_reasons": "; ".join(suggestion.reasons)},
                      "predictions": [{"model_version": f"{reply.model_name}:v{reply.model_version}",
                                       "score": round(suggestion.score, 4),
                                       "result": rectangle_results(detections, suggestion.width, suggestion.height,
                                                                   args.from_name, args.to_name)}]})
        if not args.json:
            print(f"{suggestion.rank}. {suggestion.file_name}: {'; '.join(suggestion.reasons)}")
    Path(args.tasks).write_text(json.dumps(tasks, indent=1))
    for note in reply.notes:
        print(f"artdet suggest: {note}", file=sys.stderr)
    print(f"artdet suggest: {len(tasks)} of {reply.pool_images} images, by {reply.model_name} "
          f"v{reply.model_version}; Label Studio tasks in {args.tasks}", file=sys.stderr)
    if args.json:
        print_json(json_format.MessageToDict(reply, preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True))
    return 0


def _local_address(config) -> str:
    """HOST:PORT at which a client on this machine reaches the server `config` describes."""
    host = config.host.strip("[]")
    host = "localhost" if host in ("", "0.0.0.0", "::") else host
    return f"[{host}]:{config.port}" if ":" in host else f"{host}:{config.port}"


def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, tls_ca = args.server or os.environ.get(SERVER_ENV), args.tls_ca or os.environ.get("ARTDET_TLS_CA")
    if not server:  # the server `artdet serve` starts from this environment (the container's HEALTHCHECK)
        config = serve_config(argparse.Namespace())
        server, tls_ca = _local_address(config), tls_ca or config.tls_cert  # a self-signed one is its own CA
    if tls_ca:
        name = args.tls_server_name or os.environ.get("ARTDET_TLS_SERVER_NAME")
        channel = grpc.secure_channel(server, grpc.ssl_channel_credentials(Path(tls_ca).read_bytes()),
                                      [("grpc.ssl_target_name_override", name)] if name else None)
    else:
        channel = grpc.insecure_channel(server)
    stub, deadline = health_pb2_grpc.HealthStub(channel), time.monotonic() + args.wait
    while True:  # with --wait: until the server is up and SERVING, or the time is over
        left = deadline - time.monotonic()
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), wait_for_ready=left > 0,
                               timeout=max(0.5, min(args.timeout, left)) if left > 0 else args.timeout)
        except grpc.RpcError as exc:
            if left <= 0 or exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                raise
            continue
        if reply.status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


# parser -----------------------------------------------------------------------------------------

def add_connection_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    default = os.environ.get(SERVER_ENV) or None if required else None
    parser.add_argument("--server", required=required and default is None, default=default,
                        help=f"HOST:PORT of an artdet server (default: ${SERVER_ENV})")
    parser.add_argument("--token", help="bearer token (default: $ARTDET_TOKEN)")
    parser.add_argument("--tls-ca", help="CA certificate to verify a TLS server")


# `artdet serve` flags: ServerConfig fields (server/app.py holds the defaults)
SERVE_FLAGS = {
    "data_dir": (str, "data directory: SQLite index, datasets, runs, models (default ./artdet-data)"),
    "host": (str, "address to bind (default 127.0.0.1; 0.0.0.0: every interface, with tokens or --insecure)"),
    "port": (int, "gRPC port (default 50051; 0 picks a free one)"),
    "model_dir": (str, "Detect-only replica: serve the models directory DIR (no database, no training)"),
    "tokens_file": (str, 'JSON {"TOKEN": ["annotator"|"operator"|"client"|"admin", ...]} (or tokens in '
                         '$ARTDET_TOKENS: "TOKEN=role[,role];TOKEN=role")'),
    "tls_cert": (str, "PEM certificate chain for TLS"),
    "tls_key": (str, "PEM private key for TLS"),
    "max_message_mb": (int, "largest gRPC message (default 32)"),
    "max_image_pixels": (int, "largest image accepted (default 40,000,000 pixels)"),
    "max_upload_mb": (int, "largest dataset upload (default 20,000 MB)"),
    "job_concurrency": (int, "training jobs run at once (default 1)"),
    "rpc_threads": (int, "gRPC worker threads (default 16)"),
    "max_streams": (int, "streaming calls open at once, so Detect keeps threads (default: half of --rpc-threads)"),
    "detect_concurrency": (int, "model runs at once across Detect calls (default 2)"),
    "decode_budget_mp": (int, "megapixels decoded at once across Detect calls; bounds memory (default 16)"),
    "extra_loaded_versions": (int, "model versions kept loaded beside each active and previous one (default 2)"),
    "shutdown_grace_s": (float, "seconds open calls get to finish on SIGTERM (default 5)"),
    "ort_intra_threads": (int, "onnxruntime intra-op threads per model (default: onnxruntime's)"),
    "ort_inter_threads": (int, "onnxruntime inter-op threads per model"),
    "default_model": (str, "model name Detect uses when a request names none"),
    "metrics_port": (int, "Prometheus metrics HTTP port (default: off)"),
    "refresh_seconds": (float, "how often a Detect-only replica re-reads active versions (default 2)"),
    "min_free_mb": (int, "refuse uploads and new jobs while the data directory has less free space (default 500)"),
    "console_host": (str, "web console address (default 127.0.0.1: this machine only)"),
    "console_port": (int, "web console port, HTTPS with --tls-cert (default 8051; 0 picks a free one)"),
    "label_studio_url": (str, "the Label Studio whose projects the console's ML backend serves (default: any "
                              "that sets a project up with a valid token)"),
}


def add_service_commands(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the gRPC service (or a Detect-only replica with --model-dir)")
    for flag, (kind, help_text) in SERVE_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None,
                       help=f"{help_text}; also $ARTDET_{flag.upper()}")
    p.add_argument("--insecure", action="store_true",
                   help="serve without tokens on an address other machines can reach (refused otherwise)")
    p.add_argument("--no-console", action="store_true",
                   help="no web console (Detect-only replicas and serving-only installs never serve one)")
    p.set_defaults(handler=cmd_serve)

    p = subparsers.add_parser("health", help="ask a server's grpc.health.v1 service whether it is serving",
                              description="Without --server or $ARTDET_SERVER: the server `artdet serve` starts from "
                              "this environment's ARTDET_* variables (localhost:$ARTDET_PORT; TLS trusting "
                              "$ARTDET_TLS_CERT when set).")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds one check may take (default 5)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="keep asking until the server is up and serving, for at most SECONDS (default: ask once)")
    add_connection_arguments(p, required=False)
    p.add_argument("--tls-server-name", help="the name the server's certificate is for, when not the host in "
                   "--server (default $ARTDET_TLS_SERVER_NAME)")
    p.set_defaults(handler=cmd_health)

    p = subparsers.add_parser("suggest", help="which images to label next: the model's least certain, spread out")
    p.add_argument("--pool", required=True, help="a folder of unlabelled images, or a dataset's name on the server")
    p.add_argument("--budget", type=int, required=True, help="how many images to suggest")
    p.add_argument("--dataset", help="the labelled dataset: suggestions should differ from its images too")
    p.add_argument("--model", help="model name (default: the server's default model)")
    p.add_argument("--strategy", choices=("uncertainty-diversity", "uncertainty"), default="uncertainty-diversity",
                   help="uncertainty and flip disagreement, then spread by image embeddings (default), or not")
    p.add_argument("--tasks", default="suggested-tasks.json",
                   help="Label Studio task list to write, pre-annotations included (default: %(default)s)")
    p.add_argument("--image-url-prefix", default="/data/local-files/?d=",
                   help="put before each image's path in the tasks: how Label Studio reaches the pool's files "
                        "(default: its local-files storage, %(default)s)")
    p.add_argument("--from-name", default="label", help="the project's RectangleLabels name (default: label)")
    p.add_argument("--to-name", default="image", help="the project's Image name (default: image)")
    p.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_suggest)

    p = subparsers.add_parser("push", help="upload annotations (COCO, Label Studio, CVAT, VOC) and their images as "
                                           "a dataset version")
    p.add_argument("annotations", help=ANNOTATIONS_HELP)
    p.add_argument("--name", required=True, help="dataset name")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_push)

    datasets = subparsers.add_parser("datasets", help="dataset versions on a server").add_subparsers(
        dest="datasets_command", required=True)
    p = datasets.add_parser("list", help="list dataset versions")
    p.add_argument("--name")
    p.add_argument("--json", action="store_true")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_datasets_list)
    p = datasets.add_parser("show", help="one dataset version's statistics")
    p.add_argument("name")
    p.add_argument("version", type=int, nargs="?", default=0, help="default: the latest")
    p.add_argument("--json", action="store_true")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_datasets_show)
    p = datasets.add_parser("delete", help="delete a dataset version (every version without VERSION)")
    p.add_argument("name")
    p.add_argument("version", type=int, nargs="?", default=0)
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_datasets_delete)

    jobs = subparsers.add_parser("jobs", help="training jobs on a server").add_subparsers(dest="jobs_command",
                                                                                         required=True)
    p = jobs.add_parser("start", help="start a training job")
    p.add_argument("--dataset", required=True)
    p.add_argument("--dataset-version", type=int, default=0, help="default: the latest")
    p.add_argument("--model-name", help="register the model under this name (default: the dataset's)")
    p.add_argument("--base-model", help="NAME[:VERSION] of a registered model to retrain from")
    p.add_argument("--watch", action="store_true", help="follow the job until it ends (exit 1 unless it succeeds)")
    p.add_argument("--quiet", action="store_true")
    add_train_config_arguments(p, remote=True)
    p.add_argument("--weights", choices=NAMED_WEIGHTS, default=NAMED_WEIGHTS[0],
                   help="starting weights on the server (default: coco)")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_jobs_start)
    for name, handler, text in (("watch", cmd_jobs_watch, "follow a job (replays its past events)"),
                                ("cancel", cmd_jobs_cancel, "cancel a queued or running job"),
                                ("delete", cmd_jobs_delete, "delete an ended job's run folder (checkpoints, "
                                 "events); its registered models stay")):
        p = jobs.add_parser(name, help=text)
        p.add_argument("job_id")
        p.add_argument("--quiet", action="store_true")
        add_connection_arguments(p)
        p.set_defaults(handler=handler)
    p = jobs.add_parser("show", help="a job's state, configuration and results")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_jobs_show)
    p = jobs.add_parser("list", help="list jobs")
    p.add_argument("--json", action="store_true")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_jobs_list)

    models = subparsers.add_parser("models", help="the model registry").add_subparsers(dest="models_command",
                                                                                      required=True)
    p = models.add_parser("list", help="list model versions")
    p.add_argument("--name")
    p.add_argument("--json", action="store_true")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_models_list)
    p = models.add_parser("activate", help="serve a version under its name")
    p.add_argument("name")
    p.add_argument("version", type=int)
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_models_activate)
    p = models.add_parser("rollback", help="serve the previously active version again")
    p.add_argument("name")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_models_rollback)
    p = models.add_parser("delete", help="delete a version that is not active")
    p.add_argument("name")
    p.add_argument("version", type=int)
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_models_delete)
    p = models.add_parser("download", help="download a version's ONNX file")
    p.add_argument("name")
    p.add_argument("version", type=int, nargs="?", default=0)
    p.add_argument("--out", required=True)
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_models_download)
    p = models.add_parser("describe", help="set per-class descriptions the app shows with detections")
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.add_argument("class_info", nargs="+", metavar="CLASS=DESCRIPTION")
    add_connection_arguments(p)
    p.set_defaults(handler=cmd_models_describe)
