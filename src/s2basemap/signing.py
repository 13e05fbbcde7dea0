"""Signed asset URLs: Microsoft Planetary Computer's SAS tokens, through its own SDK.

Manifests keep the unsigned hrefs, so a search that finds the same items writes
the same manifest; reads sign at read time. A token the storage refuses (HTTP
403: expired or revoked) is dropped from the SDK's cache, so the next signature
uses a new one. The SDK takes the optional `PC_SDK_SUBSCRIPTION_KEY` (sent as a
header to the token endpoint, never logged) and the token endpoint
`PC_SDK_SAS_URL` from the environment.
"""

from __future__ import annotations

import re

# a signed URL's query: st=...&se=...&sp=...&sig=...; kept out of records and messages
SIGNATURE = re.compile(r"\?[^\s'\"]*\bsig=[^\s'\"]*")


class Signer:
    """URLs as they are: a source that needs no signature."""

    signs = False

    def sign(self, href: str) -> str:
        return href

    def renew(self) -> None:
        """Forget any token: the storage refused it."""


class PlanetaryComputerSigner(Signer):
    signs = True

    def sign(self, href: str) -> str:
        import planetary_computer

        return planetary_computer.sign_url(href)

    def renew(self) -> None:
        from planetary_computer import sas

        sas.TOKEN_CACHE.clear()


def signer_for(signed: bool) -> Signer:
    return PlanetaryComputerSigner() if signed else Signer()


def unsigned(text: str) -> str:
    """`text` with any URL's signature replaced by a mark."""
    return SIGNATURE.sub("?<signature>", text)
