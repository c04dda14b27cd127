"""A cluster seeded with known latent pull failures and healthy workloads, for the prevention scan's tests and bench.

Every workload is a Deployment with a ReplicaSet and one running pod whose `imageID` is the digest it really
pulled. Seeded workloads each carry one latent failure (`Seed.risk`) that the next pod would hit; healthy workloads
share a pool of images. The registries are given as `RegistryHandle`s so the same world can be built on the
simulated registry (tests) or real `docker-registry` processes (the bench).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.prevention.findings import Risk
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster

BOTH = ["linux/amd64", "linux/arm64"]


@dataclass(frozen=True, slots=True)
class RegistryHandle:
    """A registry to seed: its host and a push function (repo, tag, platforms) -> digest of what the tag names."""

    host: str
    push: Callable[[str, str, list[str]], str]


@dataclass(frozen=True, slots=True)
class Seed:
    risk: Risk
    namespace: str
    workload: str  # "deployment/name"


@dataclass(slots=True)
class LatentWorld:
    """Builds the seeded cluster; `seeds` lists what a correct scan must find, and nothing else is wrong."""

    cluster: SimCluster
    public: RegistryHandle  # anonymous pulls
    private: RegistryHandle  # needs (user, password) or (jwt_user, jwt password)
    limited: RegistryHandle  # anonymous, reports a nearly spent pull quota
    private_jwt: RegistryHandle  # needs (jwt_user, jwt_password): may be the same registry as `private`
    user: str
    password: str
    jwt_user: str
    jwt_password: str
    seeds: list[Seed] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def nodes(self) -> None:
        self.cluster.put(k8s.node("amd-1", arch="amd64"))
        self.cluster.put(k8s.node("amd-2", arch="amd64"))
        self.cluster.put(k8s.node("arm-1", arch="arm64"))

    def namespace(self, name: str) -> None:
        self.cluster.put(k8s.namespace(name))
        self.cluster.put(k8s.service_account("default", name))
        secret = k8s.docker_config_secret(
            "regcred", name, {self.private.host: {"username": self.user, "password": self.password}}
        )
        self.cluster.put(secret)

    def workload(
        self, namespace: str, name: str, image: str, pulled: str, *, secrets: tuple[str, ...] = (), **pod_spec: Any
    ) -> None:
        """A Deployment of `image` with one running pod that pulled `pulled` (a digest)."""
        deploy = k8s.deployment(name, namespace, image, 1)
        tmpl = deploy["spec"]["template"]["spec"]
        if secrets:
            tmpl["imagePullSecrets"] = [{"name": s} for s in secrets]
        tmpl.update(pod_spec)
        rs = k8s.replicaset(deploy)
        pod = k8s.set_running(k8s.pod_for(rs, 0, node_name="amd-1", image_pull_secrets=secrets), name)
        repo = image.rsplit(":", 1)[0]
        for status in pod["status"]["containerStatuses"]:
            status["imageID"] = f"{repo}@{pulled}"
        for obj in (deploy, rs, pod):
            self.cluster.put(obj)

    def _name(self, kind: str) -> str:
        return f"{kind}-{next(self._counter)}"

    def _seed(self, risk: Risk, namespace: str, name: str) -> None:
        self.seeds.append(Seed(risk, namespace, f"deployment/{name}"))

    # ---- one latent failure each ----

    def tag_gone(self, ns: str) -> None:
        name = self._name("gone")
        digest = self.public.push(f"{ns}/{name}", "1.1", BOTH)
        self.workload(ns, name, f"{self.public.host}/{ns}/{name}:1.0", digest)  # 1.0 was deleted by retention
        self._seed(Risk.TAG_GONE, ns, name)

    def platform_missing(self, ns: str) -> None:
        name = self._name("amd-only")
        digest = self.public.push(f"{ns}/{name}", "1.0", ["linux/amd64"])
        self.workload(ns, name, f"{self.public.host}/{ns}/{name}:1.0", digest)  # the arm64 pool can take it
        self._seed(Risk.PLATFORM_MISSING, ns, name)

    def secret_missing(self, ns: str) -> None:
        name = self._name("no-secret")
        digest = self.public.push(f"{ns}/{name}", "1.0", BOTH)
        self.workload(ns, name, f"{self.public.host}/{ns}/{name}:1.0", digest, secrets=("deleted-cred",))
        self._seed(Risk.SECRET_MISSING, ns, name)

    def wrong_password(self, ns: str) -> None:
        name = self._name("rotated")
        digest = self.private.push(f"{ns}/{name}", "1.0", BOTH)
        stale = k8s.docker_config_secret(
            f"{name}-cred", ns, {self.private.host: {"username": self.user, "password": "rotated-away-" + name}}
        )
        self.cluster.put(stale)
        self.workload(ns, name, f"{self.private.host}/{ns}/{name}:1.0", digest, secrets=(f"{name}-cred",))
        self._seed(Risk.CREDENTIALS_REJECTED, ns, name)

    def no_credentials(self, ns: str) -> None:
        name = self._name("unlinked")
        digest = self.private.push(f"{ns}/{name}", "1.0", BOTH)
        self.workload(ns, name, f"{self.private.host}/{ns}/{name}:1.0", digest, serviceAccountName="bare")
        self.cluster.put(k8s.service_account("bare", ns))
        self._seed(Risk.NO_CREDENTIALS, ns, name)

    def expiring_token(self, ns: str) -> None:
        name = self._name("expiring")
        digest = self.private_jwt.push(f"{ns}/{name}", "1.0", BOTH)
        cred = k8s.docker_config_secret(
            f"{name}-cred", ns, {self.private_jwt.host: {"username": self.jwt_user, "password": self.jwt_password}}
        )
        self.cluster.put(cred)
        self.workload(ns, name, f"{self.private_jwt.host}/{ns}/{name}:1.0", digest, secrets=(f"{name}-cred",))
        self._seed(Risk.CREDENTIAL_EXPIRING, ns, name)

    def digest_changed(self, ns: str) -> None:
        name = self._name("moved")
        old = self.public.push(f"{ns}/{name}", "latest", ["linux/amd64"])
        self.public.push(f"{ns}/{name}", "latest", BOTH)  # the tag moved after the running pod pulled it
        self.workload(ns, name, f"{self.public.host}/{ns}/{name}:latest", old)
        self._seed(Risk.DIGEST_CHANGED, ns, name)

    def quota_low(self, ns: str) -> None:
        name = self._name("quota")
        digest = self.limited.push(f"{ns}/{name}", "1.0", BOTH)
        self.workload(ns, name, f"{self.limited.host}/{ns}/{name}:1.0", digest)
        self._seed(Risk.QUOTA_LOW, ns, name)

    SEEDERS = (
        "tag_gone",
        "platform_missing",
        "secret_missing",
        "wrong_password",
        "no_credentials",
        "expiring_token",
        "digest_changed",
        "quota_low",
    )

    def build(self, workloads: int, images: int, *, seeded_per_kind: int = 2, namespaces: int = 10) -> None:
        """`workloads` Deployments in `namespaces` namespaces; `seeded_per_kind` of each latent failure, the rest
        healthy on a pool of images so that the world holds about `images` distinct images."""
        self.nodes()
        names = [f"team-{i}" for i in range(namespaces)]
        for ns in names:
            self.namespace(ns)
        seeded = 0
        for i, kind in enumerate(self.SEEDERS * seeded_per_kind):
            getattr(self, kind)(names[i % namespaces])
            seeded += 1
        pool = max(1, images - seeded)
        digests: list[tuple[str, str]] = []
        for j in range(pool):
            registry = self.private if j % 3 == 0 else self.public
            repo = f"shared/app-{j}"
            digests.append((f"{registry.host}/{repo}:2.{j}", registry.push(repo, f"2.{j}", BOTH)))
        for k in range(max(0, workloads - seeded)):
            image, digest = digests[k % pool]
            ns = names[k % namespaces]
            private = image.startswith(self.private.host + "/")
            self.workload(ns, f"ok-{k}", image, digest, secrets=("regcred",) if private else ())


def jwt_expiring_in(delta: timedelta, now: datetime | None = None) -> str:
    """A JWT-shaped token whose `exp` claim is `delta` from now (unsigned: registries here check it as a password)."""

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    exp = int(((now or datetime.now(UTC)) + delta).timestamp())
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'sub': 'robot', 'exp': exp})}.{part('signature')}"
