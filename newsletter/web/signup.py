"""Signup, confirmation and unsubscribe routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
