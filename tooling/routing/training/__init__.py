"""Offline training and evaluation of the learned complexity scorer (never imported when serving)."""
