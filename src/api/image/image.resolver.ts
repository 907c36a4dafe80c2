import { Arg, Ctx, Query, Resolver } from 'type-graphql';
import type { ImageView } from '../../services/images.service';
import type { ApiContext } from '../context';
import { Image } from './image.types';

@Resolver(() => Image)
export class ImageResolver {
  @Query(() => [Image], { description: 'every configured image, with the state the workers reported' })
  images(@Ctx() ctx: ApiContext): Promise<ImageView[]> {
    return ctx.services.images.list();
  }

  @Query(() => Image, { nullable: true, description: 'one configured image; null when no image has that name' })
  image(@Arg('name', () => String) name: string, @Ctx() ctx: ApiContext): Promise<ImageView | null> {
    return ctx.services.images.get(name);
  }
}
