"""Building the Kubernetes API client from settings: a kubeconfig file, the pod's service account, or ~/.kube/config.

Credentials that expire are kept fresh (issue 13, point 4). kubernetes_asyncio's `new_client_from_config` runs an exec
plugin once and reads a `tokenFile` once, so after EKS's ~15 min (GKE/AKS ~1 h) every call gets 401 for ever. Here, as
client-go does (`plugin/pkg/client/auth/exec/exec.go`: new credentials when the cached ones are past their
`expirationTimestamp`, and again after a 401 answer; `transport/token_source.go`: a token file is re-read
periodically), `CredentialRefresher`:
- re-runs the exec plugin shortly before `expirationTimestamp`, and re-reads a token file at most every
  `file_period_s` (the projected service account token is rotated by kubelet too), before a request goes out;
- on a 401 answer, gets fresh credentials at once and repeats the request once (`RefreshingApiClient.request`);
- while it has no working credentials (the plugin fails, the server still says 401) it says so: `ok` is False,
  `problem` names why (for /readyz), one warning is logged, and it keeps trying on every request; the first request
  that succeeds again logs the recovery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from multidict import CIMultiDict

from bot.settings import KubeSettings

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class CredentialRefresher:
    """Keeps the bearer token of an exec-plugin or token-file user fresh; reports whether it has working credentials."""

    def __init__(
        self,
        configuration: client.Configuration,
        *,
        loader: Any | None = None,
        token_file: Path | None = None,
        skew_s: float = 30.0,
        file_period_s: float = 60.0,
    ) -> None:
        self._configuration = configuration
        self._loader = loader  # a KubeConfigLoader whose user runs an exec plugin
        self._token_file = token_file
        self._skew_s = skew_s
        self._file_period_s = file_period_s
        self._lock = asyncio.Lock()
        self._expiry: datetime | None = None
        self._issued: datetime | None = None
        self._read_at = time.monotonic()
        self.ok = True
        self.problem: str | None = None
        self.refreshes = 0
        self._refused_by_server = False
        if loader is not None:
            self._note_expiry()

    @property
    def kind(self) -> str:
        """What the credentials come from: "exec" or "tokenFile"."""
        return "exec" if self._loader is not None else "tokenFile"

    def _note_expiry(self) -> None:
        expiry = getattr(self._loader, "exec_plugin_expiry", None)
        self._expiry = expiry.astimezone(UTC) if isinstance(expiry, datetime) else None
        self._issued = datetime.now(UTC)

    def _due(self) -> bool:
        """Whether the credentials expire within the skew (exec), are due for a re-read (file), or failed."""
        if not self.ok:
            return True
        if self._loader is not None:
            if self._expiry is None:
                return False
            lifetime = (self._expiry - (self._issued or self._expiry)).total_seconds()
            skew = min(self._skew_s, max(lifetime / 4, 0.0))
            return (self._expiry - datetime.now(UTC)).total_seconds() <= skew
        return time.monotonic() - self._read_at >= self._file_period_s

    async def __call__(self, _configuration: Any) -> None:
        """kubernetes_asyncio's refresh_api_key_hook: runs before every request."""
        if self._due():
            await self.refresh()

    async def refresh(self, *, reason: str = "expiry") -> bool:
        """Get fresh credentials now; True when it got some."""
        async with self._lock:
            try:
                if self._loader is not None:
                    if hasattr(self._loader, "exec_plugin_expiry"):
                        del self._loader.exec_plugin_expiry  # the loader re-runs the plugin only without it
                    await self._loader.load_from_exec_plugin()
                    token = str(self._loader.token)
                    self._note_expiry()
                else:
                    assert self._token_file is not None
                    text = (await asyncio.to_thread(self._token_file.read_text, encoding="utf-8")).strip()
                    if not text:
                        raise ValueError(f"token file {self._token_file} is empty")
                    token = f"Bearer {text}"
                    self._read_at = time.monotonic()
            except Exception as exc:  # the plugin failed, the file is gone: say so and keep trying
                self._failed(f"cannot get new credentials from the {self.kind} ({type(exc).__name__}: {exc})"[:300])
                return False
            self._configuration.api_key["BearerToken"] = token
            self.refreshes += 1
            log.info("kubernetes: credentials refreshed from the %s (%s)", self.kind, reason)
            if not self.ok and not self._refused_by_server:
                self.accepted()  # the source works again; a 401 on the next request would say otherwise
            return True

    def _failed(self, problem: str, *, by_server: bool = False) -> None:
        self._refused_by_server = by_server
        if self.ok or problem != self.problem:
            log.warning("kubernetes: no working credentials: %s; retrying on every request", problem)
        self.ok = False
        self.problem = problem

    def refused(self) -> None:
        """The server answered 401 even with fresh credentials."""
        self._failed(f"the API server refuses the credentials from the {self.kind} (401 Unauthorized)", by_server=True)

    def accepted(self) -> None:
        """A request got through: the credentials work (again)."""
        if not self.ok:
            log.warning("kubernetes: credentials work again (%s recovered)", self.kind)
        self.ok = True
        self.problem = None
        self._refused_by_server = False


class RefreshingApiClient(client.ApiClient):
    """An ApiClient that, on 401, gets fresh credentials and repeats the request once."""

    credentials: CredentialRefresher | None = None

    def request(  # the generated client calls `await self.request(...)`
        self,
        method: str,
        url: str,
        query_params: Any = None,
        headers: Any = None,
        post_params: Any = None,
        body: Any = None,
        _preload_content: bool = True,
        _request_timeout: Any = None,
    ) -> Awaitable[Any]:
        return self._request_refreshing(
            method, url, query_params, headers, post_params, body, _preload_content, _request_timeout
        )

    async def _request_refreshing(self, *args: Any) -> Any:
        parent = self._request_wire
        creds = self.credentials
        try:
            response = await parent(*args)
        except ApiException as exc:
            if creds is None or exc.status != 401:
                raise
        else:
            if creds is None or getattr(response, "status", 200) != 401:
                if creds is not None:
                    creds.accepted()
                return response
            response.release()  # a watch (not preloaded) answered 401
        assert creds is not None
        if not await creds.refresh(reason="401 Unauthorized"):
            refused = ApiException(status=401, reason=f"Unauthorized; {creds.problem}")
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401}
            refused.body = json.dumps({**status, "message": creds.problem}).encode()  # the caller decodes it
            raise refused
        method, url, query_params, headers, *rest = args
        headers = dict(headers or {})
        headers.pop("Authorization", None)
        headers["authorization"] = self.configuration.api_key["BearerToken"]
        try:
            response = await parent(method, url, query_params, headers, *rest)
        except ApiException as exc:
            if exc.status == 401:
                creds.refused()
            raise
        if getattr(response, "status", 200) == 401:
            creds.refused()
        else:
            creds.accepted()
        return response

    async def _request_wire(self, method: str, url: str, query_params: Any, headers: Any, *rest: Any) -> Any:
        return await super().request(method, url, query_params, wire_headers(headers), *rest)


def wire_headers(headers: Any) -> Any:
    """Headers with list values sent as repeated header lines.

    The generated client passes headers as a dict, one value per name; impersonating several groups needs one
    `Impersonate-Group` line per group (the API server reads every value of the header; one comma-joined line would
    be a single group named "a,b"), so a list value becomes several lines of a multidict, which aiohttp sends as is."""
    if not isinstance(headers, dict) or not any(isinstance(v, list | tuple) for v in headers.values()):
        return headers
    wire: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        for one in value if isinstance(value, list | tuple) else (value,):
            wire.add(name, str(one))
    return wire


async def credentials_ready(api: Any) -> bool:
    """For /readyz: refresh credentials that are due (a watch stream that stays open makes no new request), then
    report whether the client has working ones."""
    creds = getattr(api, "credentials", None)
    if creds is not None and creds._due():
        await creds.refresh(reason="readiness check")
    return credentials_ok(api)


def credentials_ok(api: Any) -> bool:
    """For /readyz: False while the client has no working credentials (exec plugin or token file)."""
    creds = getattr(api, "credentials", None)
    return creds is None or bool(creds.ok)


async def _from_kubeconfig(path: str | None, context: str | None) -> RefreshingApiClient:
    configuration = client.Configuration()
    loader = await config.load_kube_config(
        config_file=path, context=context, client_configuration=configuration, persist_config=False
    )
    api = RefreshingApiClient(configuration=configuration)
    user = getattr(loader, "_user", None)
    if user is not None and "exec" in user:
        api.credentials = CredentialRefresher(configuration, loader=loader)
    elif user is not None and "tokenFile" in user:
        base = Path(path).parent if path else Path.home() / ".kube"
        token_file = Path(str(user["tokenFile"]))
        api.credentials = CredentialRefresher(configuration, token_file=base / token_file)
    if api.credentials is not None:
        configuration.refresh_api_key_hook = api.credentials
        if api.credentials.kind == "tokenFile":
            await api.credentials.refresh(reason="start")  # trimmed, as client-go reads token files
        log.info("kubernetes: credentials from the %s, refreshed before expiry and on 401", api.credentials.kind)
    return api


async def load_api_client(
    settings: KubeSettings, service_account_token: Path = SERVICE_ACCOUNT_TOKEN
) -> client.ApiClient:
    """An ApiClient for settings.kubeconfig (and context), else in-cluster config inside a pod, else ~/.kube/config."""
    # The client logs whole response bodies (Secrets included) at DEBUG: never let that logger go below WARNING.
    logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.WARNING)
    if settings.kubeconfig is not None:
        log.info("kubernetes: kubeconfig %s, context %s", settings.kubeconfig, settings.context or "(current)")
        return await _from_kubeconfig(str(settings.kubeconfig), settings.context)
    if await asyncio.to_thread(service_account_token.exists):
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            log.info("kubernetes: not using in-cluster config: %s", exc)
        else:
            log.info("kubernetes: in-cluster service account")
            api = RefreshingApiClient(configuration=configuration)
            # kubelet rotates the projected token (bound tokens live an hour): re-read it as client-go does.
            api.credentials = CredentialRefresher(configuration, token_file=service_account_token)
            configuration.refresh_api_key_hook = api.credentials
            return api
    log.info("kubernetes: default kubeconfig, context %s", settings.context or "(current)")
    return await _from_kubeconfig(None, settings.context)
