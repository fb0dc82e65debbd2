"""Test helpers: a throwaway service-account authorized key in the format `yc iam key create` writes."""

from __future__ import annotations

import functools
import json
from typing import Any


@functools.lru_cache(maxsize=1)
def _pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def authorized_key(key_id: str = "ajekeyid0000test", sa_id: str = "ajesa000000test") -> dict[str, Any]:
    private, public = _pair()
    return {
        "id": key_id,
        "service_account_id": sa_id,
        "created_at": "2026-11-01T10:00:00.000000Z",
        "key_algorithm": "RSA_2048",
        "public_key": public,
        "private_key": f"PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <{key_id}>\n{private}",
    }


def authorized_key_json(**kwargs: Any) -> str:
    return json.dumps(authorized_key(**kwargs))
