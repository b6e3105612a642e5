"""Errors of the review workflow: bad input that changes nothing."""

from __future__ import annotations


class ReviewError(ValueError):
    """A review request that cannot be honoured (unknown round, item not handed out, ...)."""
