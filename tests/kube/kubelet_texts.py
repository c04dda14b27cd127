"""Real kubelet texts for the tests of kubelet behaviour, each with where it comes from.

Formats are kubelet's own (kubernetes/kubernetes pkg/kubelet/images/image_manager.go); error details are copied
from public issues or from containerd over CRI (tests/corpus).
"""

from __future__ import annotations

# kubernetes/kubernetes pkg/kubelet/images/image_manager.go (>= 1.32, PR #127918): while backing off, kubelet writes
# `Back-off pulling image %q` + `: ` + the stored `<err>: <msg>` of the last attempt. Verbatim from
# https://github.com/sympozium-ai/sympozium/issues/36 (also in tests/corpus/public.jsonl).
GHCR_IMAGE = "ghcr.io/alexsjones/sympozium/node-probe:v0.1.8"
GHCR_NOT_FOUND = (
    "rpc error: code = NotFound desc = failed to pull and unpack image"
    ' "ghcr.io/alexsjones/sympozium/node-probe:v0.1.8":'
    ' failed to resolve reference "ghcr.io/alexsjones/sympozium/node-probe:v0.1.8":'
    " ghcr.io/alexsjones/sympozium/node-probe:v0.1.8: not found"
)
# The ErrImagePull waiting message is the runtime error itself (evalCRIPullErr: `return err.Error(), ErrImagePull`).
GHCR_ERR_IMAGE_PULL = GHCR_NOT_FOUND
GHCR_BACKOFF_132 = f'Back-off pulling image "{GHCR_IMAGE}": ErrImagePull: {GHCR_NOT_FOUND}'
# kubelet < 1.32: the bare back-off text (image_manager.go `Back-off pulling image %q`).
GHCR_BACKOFF_OLD = f'Back-off pulling image "{GHCR_IMAGE}"'
# kubelet's Failed event: `Failed to pull image %q: %v` (image_manager.go pullImage).
GHCR_FAILED_EVENT = f'Failed to pull image "{GHCR_IMAGE}": {GHCR_NOT_FOUND}'
# client-go tools/record/events_cache.go EventAggregatorByReasonMessageFunc: the 10th similar event in 10 minutes.
GHCR_FAILED_EVENT_COMBINED = "(combined from similar events): " + GHCR_FAILED_EVENT

# Docker Hub's rate limit through the Docker runtime, verbatim from https://github.com/docker/hub-feedback/issues/2429
# (tests/corpus/public.jsonl).
HUB_RATE_LIMITED = (
    "Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit"
    " by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
)

# evalCRIPullErr (image_manager.go): a runtime error that starts with crierrors.ErrRegistryUnavailable
# ("RegistryUnavailable", k8s.io/cri-api/pkg/errors) becomes this message and the waiting reason RegistryUnavailable.
REGISTRY_UNAVAILABLE_IMAGE = "registry.example.com/team/app:1.0"
REGISTRY_UNAVAILABLE = f"image pull failed for {REGISTRY_UNAVAILABLE_IMAGE} because the registry is unavailable"
REGISTRY_UNAVAILABLE_BACKOFF = (
    f'Back-off pulling image "{REGISTRY_UNAVAILABLE_IMAGE}": RegistryUnavailable: {REGISTRY_UNAVAILABLE}'
)

# evalCRIPullErr for crierrors.ErrSignatureValidationFailed; the detail is CRI-O's, verbatim from
# https://kubernetes.io/blog/2023/06/29/container-image-signature-verification/ (tests/corpus/public.jsonl).
UNSIGNED_IMAGE = "quay.io/crio/unsigned"
SIGNATURE_FAILED = (
    "image pull failed for quay.io/crio/unsigned because the signature validation failed:"
    " Source image rejected: A signature was required, but no signature exists"
)

# ImageInspectError with reason InspectFailed: `Failed to inspect image %q: %v`, verbatim (empty name included) from
# https://github.com/k3s-io/k3s/issues/12540.
INSPECT_IMAGE = "ghcr.io/stakater/reloader:v1.4.1"
INSPECT_FAILED = 'Failed to inspect image "": rpc error: code = Unknown desc = ' + (
    "unable to convert a nil pointer to a runtime API image"
)
