"""Notifications: in-portal messages to tenant admins, webhook endpoints and their writes
(`services`), and the signed, retried deliveries (`webhooks`, `tasks`)."""
