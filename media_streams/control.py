"""Twilio REST call control: hang up (and, in later issues, transfer and outbound calls).

One form-encoded POST per action against the Calls resource (protocols.md §1.6):
`POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json` with `Status=completed` hangs up. We use httpx
directly rather than twilio-python's client: its async mode needs an aiohttp session per client
with its own lifecycle, for what is one request; httpx also honours the standard proxy variables.
`api_base` is configurable so tests point it at a local fake of Twilio's REST API.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import structlog

log = structlog.get_logger("switchboard.twilio")


@dataclass(frozen=True, slots=True)
class ControlError:
    """A REST action failed; `remote` says whose fault (Twilio's answer) vs ours (network)."""

    action: str
    status: int | None
    remote: bool
    detail: str


class TwilioControl:
    TIMEOUT_S = 5.0

    def __init__(self, account_sid: str, auth_token: str, api_base: str = "https://api.twilio.com") -> None:
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self.api_base = api_base.rstrip("/")

    def _call_url(self, call_sid: str) -> str:
        return f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"

    async def update_call(self, call_sid: str, form: dict[str, str], action: str) -> ControlError | None:
        try:
            async with httpx.AsyncClient(timeout=self.TIMEOUT_S, auth=self._auth) as client:
                resp = await client.post(self._call_url(call_sid), data=form)
        except httpx.HTTPError as exc:
            log.warning("twilio_rest_failed", action=action, error=type(exc).__name__)
            return ControlError(action, None, remote=False, detail=type(exc).__name__)
        if resp.status_code >= 300:
            log.warning("twilio_rest_rejected", action=action, status=resp.status_code)
            return ControlError(action, resp.status_code, remote=True, detail=resp.text[:200])
        return None

    async def hang_up(self, call_sid: str) -> ControlError | None:
        # `completed` ends an in-progress call; `canceled` is only for queued/ringing ones.
        return await self.update_call(call_sid, {"Status": "completed"}, "hangup")

    async def redirect(self, call_sid: str, twiml: str) -> ControlError | None:
        """Replace the call's TwiML (protocols.md §1.6 "Transfer"); the media stream then ends."""
        return await self.update_call(call_sid, {"Twiml": twiml}, "redirect")

    async def create_call(
        self, to: str, from_: str, twiml: str, *, timeout_s: int = 20
    ) -> str | ControlError:
        """Place an outbound call running `twiml`; returns its CallSid."""
        url = f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Calls.json"
        form = {"To": to, "From": from_, "Twiml": twiml, "Timeout": str(timeout_s)}
        try:
            async with httpx.AsyncClient(timeout=self.TIMEOUT_S, auth=self._auth) as client:
                resp = await client.post(url, data=form)
        except httpx.HTTPError as exc:
            return ControlError("create_call", None, remote=False, detail=type(exc).__name__)
        if resp.status_code >= 300:
            return ControlError("create_call", resp.status_code, remote=True, detail=resp.text[:200])
        try:
            sid = resp.json()["sid"]
        except (ValueError, KeyError, TypeError):
            return ControlError("create_call", resp.status_code, remote=True, detail="no sid in the answer")
        return str(sid)

    async def call_status(self, call_sid: str) -> str | ControlError:
        """`queued ringing in-progress completed busy failed no-answer canceled` (§1.6)."""
        try:
            async with httpx.AsyncClient(timeout=self.TIMEOUT_S, auth=self._auth) as client:
                resp = await client.get(self._call_url(call_sid))
        except httpx.HTTPError as exc:
            return ControlError("call_status", None, remote=False, detail=type(exc).__name__)
        if resp.status_code >= 300:
            return ControlError("call_status", resp.status_code, remote=True, detail=resp.text[:200])
        try:
            return str(resp.json()["status"])
        except (ValueError, KeyError, TypeError):
            return ControlError(
                "call_status", resp.status_code, remote=True, detail="no status in the answer"
            )
