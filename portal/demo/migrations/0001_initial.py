from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name='DemoModelState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(default='demo-model', max_length=50, unique=True)),
                ('phase', models.CharField(choices=[('waiting', 'Waiting to start'), ('engine', 'Building the inference engine'), ('model', 'Unpacking the model'), ('packing', 'Packing the ModelCar'), ('uploading', 'Uploading'), ('scanning', 'Scanning'), ('approval', 'Awaiting approval'), ('published', 'Approved, signed and published'), ('starting', 'Starting the model server'), ('ready', 'Ready'), ('failed', 'Not available'), ('stopped', 'Stopped')], default='waiting', max_length=16)),
                ('message', models.TextField(blank=True)),
                ('problem', models.TextField(blank=True, help_text='What is missing and what to do instead')),
                ('model_slug', models.CharField(blank=True, max_length=100)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
    ]
