#!/usr/bin/env python3
"""Push an OCI 1.1 artifact with a subject, and discover referrers, using oras-py.

Used by berth's end-to-end tests (berth-testkit's `tools::oras_*`). Prints one
JSON object on stdout; errors go to stderr with a non-zero exit.

    oras_referrers.py push --registry 127.0.0.1:5000 --repo app --tag sbom \
        --artifact-type application/vnd.example.sbom --subject v1 \
        --file sbom.json:application/json [--annotation k=v] [--file-annotation k=v] \
        [--subject-size N [--subject-media-type T]] [--username U --password P]
    oras_referrers.py discover --registry 127.0.0.1:5000 --repo app \
        --digest sha256:... [--artifact-type T] [--allow-404] [--username U --password P]

oras-py (0.2.x) cannot set `artifactType` on push and has no referrers
("discover") call. So `push` uses `Registry.push(..., subject=...)` with
`upload_manifest` overridden to add `artifactType`, and `discover` does the
`GET /v2/<repo>/referrers/<digest>` through the client's own authenticated
session (`do_request`, which handles the bearer-token flow), following `Link`
pagination.

Two more oras-py behaviours are worked around: its `do_request` retries any
exception (an auth refusal included) five times with sleeps of up to 83 s, so
the subclass uses the undecorated function; and its default "token" auth
backend treats a `Basic` challenge's realm as a token URL, so `--auth auto`
(the default) picks the "basic" backend when `/v2/` answers with `Basic`.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

import oras.oci
import oras.provider
import requests

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class ArtifactRegistry(oras.provider.Registry):
    """oras-py's Registry that adds `artifactType` to the manifest it uploads."""

    # No retry loop: a refusal must fail fast in tests (see the module docstring).
    do_request = oras.provider.Registry.do_request.__wrapped__

    def __init__(self, *args, artifact_type=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.artifact_type = artifact_type
        self.uploaded_manifest = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest["artifactType"] = self.artifact_type
        self.uploaded_manifest = manifest
        return super().upload_manifest(manifest, container)


def auth_backend(args):
    if args.auth != "auto":
        return args.auth
    response = requests.get(f"http://{args.registry}/v2/", timeout=30)
    challenge = response.headers.get("WWW-Authenticate", "")
    return "basic" if challenge.lower().startswith("basic") else "token"


def client_for(args, artifact_type=None):
    client = ArtifactRegistry(
        hostname=args.registry,
        insecure=True,
        tls_verify=False,
        auth_backend=auth_backend(args),
        artifact_type=artifact_type,
    )
    if args.username:
        client.auth.set_basic_auth(args.username, args.password or "")
    return client


def fail(message, response=None):
    if response is not None:
        message += f": HTTP {response.status_code} {response.text[:2000]}"
    print(message, file=sys.stderr)
    sys.exit(1)


def get_manifest_raw(client, registry, repo, reference):
    url = f"http://{registry}/v2/{repo}/manifests/{reference}"
    response = client.do_request(url, "GET", headers={"Accept": MANIFEST_ACCEPT})
    if response.status_code != 200:
        fail(f"GET {url}", response)
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return response.content, media_type


def cmd_push(args):
    client = client_for(args, artifact_type=args.artifact_type)

    subject = None
    subject_json = None
    if args.subject and args.subject_size is not None:
        # Given whole: the registry may refuse to serve the subject (a signature policy).
        media_type = args.subject_media_type or MANIFEST_ACCEPT.split(", ")[0]
        subject = oras.oci.Subject(mediaType=media_type, digest=args.subject, size=args.subject_size)
        subject_json = {"mediaType": media_type, "digest": args.subject, "size": args.subject_size}
    elif args.subject:
        raw, media_type = get_manifest_raw(client, args.registry, args.repo, args.subject)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        subject = oras.oci.Subject(mediaType=media_type, digest=digest, size=len(raw))
        subject_json = {"mediaType": media_type, "digest": digest, "size": len(raw)}

    annotations = {}
    for item in args.annotation or []:
        key, _, value = item.partition("=")
        annotations[key] = value

    # oras-py wants relative file paths under the working directory unless
    # path validation is disabled; we pass absolute paths and disable it.
    files = []
    for spec in args.file or []:
        path, sep, media_type = spec.partition(":")
        path = os.path.abspath(path)
        files.append(f"{path}:{media_type}" if sep else path)

    with tempfile.TemporaryDirectory() as workdir:
        annotation_file = None
        if args.file_annotation:
            # oras-py's annotation file: per-layer annotations keyed by the file's path.
            layer = dict(item.partition("=")[::2] for item in args.file_annotation)
            annotation_file = os.path.join(workdir, "annotations.json")
            with open(annotation_file, "w") as f:
                json.dump({path.partition(":")[0]: layer for path in files}, f)
        if not files:
            empty = os.path.join(workdir, "empty.json")
            with open(empty, "w") as f:
                f.write("{}")
            files.append(f"{empty}:application/vnd.oci.empty.v1+json")
        target = f"{args.registry}/{args.repo}:{args.tag}"
        response = client.push(
            target=target,
            files=files,
            subject=subject,
            manifest_annotations=annotations or None,
            annotation_file=annotation_file,
            disable_path_validation=True,
            quiet=True,
        )
    if response.status_code not in (200, 201):
        fail(f"PUT manifest {target}", response)
    digest = response.headers.get("Docker-Content-Digest")

    # Read back what the registry stored, byte for byte.
    raw, media_type = get_manifest_raw(client, args.registry, args.repo, digest or args.tag)
    stored_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    print(
        json.dumps(
            {
                "status": response.status_code,
                "digest": stored_digest,
                "header_digest": digest,
                "mediaType": media_type,
                "size": len(raw),
                "subject": subject_json,
                "subject_header": response.headers.get("OCI-Subject"),
                "manifest": json.loads(raw),
            }
        )
    )


def cmd_discover(args):
    client = client_for(args)
    url = f"http://{args.registry}/v2/{args.repo}/referrers/{args.digest}"
    if args.artifact_type:
        url += f"?artifactType={args.artifact_type}"
    manifests = []
    pages = 0
    filters = None
    status = None
    content_type = None
    while url:
        response = client.do_request(url, "GET", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        status = response.status_code
        if status == 404 and args.allow_404:
            break
        if status != 200:
            fail(f"GET {url}", response)
        pages += 1
        body = response.json()
        manifests.extend(body.get("manifests", []))
        filters = response.headers.get("OCI-Filters-Applied", filters)
        content_type = response.headers.get("Content-Type", "")
        link = response.links.get("next", {}).get("url") if response.links else None
        if link and link.startswith("/"):
            link = f"http://{args.registry}{link}"
        url = link
    print(
        json.dumps(
            {
                "status": status,
                "pages": pages,
                "filters_applied": filters,
                "content_type": content_type,
                "manifests": manifests,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--registry", required=True, help="host:port, plain HTTP")
        p.add_argument("--repo", required=True)
        p.add_argument("--username")
        p.add_argument("--password")
        p.add_argument("--auth", choices=["auto", "basic", "token"], default="auto")

    push = sub.add_parser("push")
    common(push)
    push.add_argument("--tag", required=True)
    push.add_argument("--artifact-type")
    push.add_argument("--subject", help="tag or digest of the subject manifest in --repo")
    push.add_argument("--file", action="append", help="PATH[:MEDIATYPE], repeatable")
    push.add_argument("--annotation", action="append", help="KEY=VALUE, repeatable")
    push.add_argument(
        "--file-annotation", action="append", help="KEY=VALUE on every file's layer, repeatable"
    )
    push.add_argument("--subject-size", type=int, help="with a digest --subject: do not fetch it")
    push.add_argument("--subject-media-type", help="with --subject-size (default: OCI manifest)")
    push.set_defaults(func=cmd_push)

    discover = sub.add_parser("discover")
    common(discover)
    discover.add_argument("--digest", required=True)
    discover.add_argument("--artifact-type")
    discover.add_argument(
        "--allow-404",
        action="store_true",
        help="a registry without the referrers API (404) yields an empty list",
    )
    discover.set_defaults(func=cmd_discover)

    args = parser.parse_args()
    try:
        args.func(args)
    except Exception as e:  # one line on stderr instead of a traceback
        fail(f"{args.command} failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
